"""The in-memory engine behind core's embedded Broker, Storage and GlobalConfig."""

from __future__ import annotations

from qtasks.memory.store import MemoryStore, get_store

__all__ = ["MemoryStore", "get_store"]
