"""What every component shares."""

from __future__ import annotations

from qtasks.base.component import Component

__all__ = ["Component"]
