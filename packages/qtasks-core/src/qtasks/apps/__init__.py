"""The sync and asyncio apps and how they assemble components."""

from __future__ import annotations
