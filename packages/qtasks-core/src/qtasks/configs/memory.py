"""In-memory global configs, sharing the app's `MemoryStore` (`memory://NAME`)."""

from __future__ import annotations

from typing import Any, ClassVar

from qtasks.brokers.memory import store_name
from qtasks.configs.base import AsyncGlobalConfig, BaseGlobalConfig, SyncGlobalConfig
from qtasks.memory.store import MemoryStore, get_store


class _MemoryGlobalConfig(BaseGlobalConfig):
    url_schemes: ClassVar[tuple[str, ...]] = ("memory",)

    def __init__(self, name: str = "QueueTasks", url: str | None = None, **kwargs: Any) -> None:
        self.url = url
        self.store: MemoryStore = get_store(store_name(name, url))
        super().__init__(name=name, **kwargs)

    def _set(self, name: str, key: str, value: Any, ttl: float | None, only_new: bool) -> bool:
        return self.store.kv_set(name, key, value, ttl, only_new)

    def _get_all(self, name: str) -> dict[str, Any]:
        return self.store.kv_get_all(name)

    def _delete(self, name: str, key: str) -> None:
        with self.store.lock:
            self.store.kv.get(name, {}).pop(key, None)


class SyncMemoryGlobalConfig(_MemoryGlobalConfig, SyncGlobalConfig):
    """In-memory global config for the sync app."""


class AsyncMemoryGlobalConfig(_MemoryGlobalConfig, AsyncGlobalConfig):
    """In-memory global config for the asyncio app; its methods are coroutines."""
