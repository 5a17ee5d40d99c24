"""Built-in behaviour implemented as plugins on the public triggers: retry, Depends, State."""

from __future__ import annotations
