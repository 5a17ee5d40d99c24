"""In-memory storages, sharing the broker's `MemoryStore` (`memory://NAME`)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any, ClassVar

from qtasks._drive import Flow
from qtasks._waiters import AsyncWaiter, ThreadWaiter
from qtasks.brokers.memory import store_name
from qtasks.memory.store import MemoryStore, get_store
from qtasks.storages.base import AsyncStorage, BaseStorage, SyncStorage


class _MemoryStorage(BaseStorage):
    url_schemes: ClassVar[tuple[str, ...]] = ("memory",)
    _waiter_type: ClassVar[type[Any]] = ThreadWaiter

    def __init__(
        self,
        name: str = "QueueTasks",
        url: str | None = None,
        global_config: Any = None,
        **kwargs: Any,
    ) -> None:
        self.url = url
        self.store: MemoryStore = get_store(store_name(name, url))
        if global_config is None:
            global_config = self._default_global_config(name, url)
        super().__init__(name=name, global_config=global_config, **kwargs)

    def _default_global_config(self, name: str, url: str | None) -> Any:
        raise NotImplementedError

    def _put(self, uuid: str, mapping: dict[str, str]) -> None:
        self.store.put_record(uuid, mapping, self.config.result_ttl)

    def _update(self, uuid: str, fields: dict[str, str]) -> None:
        self.store.update_record(uuid, fields)

    def _get(self, uuid: str) -> dict[str, str] | None:
        return self.store.get_record(uuid)

    def _all(self) -> list[dict[str, str]]:
        return self.store.all_records()

    def _delete_finished(self) -> int:
        return self.store.delete_finished()

    def _flush(self) -> None:
        self.store.flush()

    def _wait_final_flow(
        self, uuid: str, timeout: float, statuses: frozenset[str]
    ) -> Flow[dict[str, str] | None]:
        deadline = time.monotonic() + timeout
        while True:
            waiter = self._waiter_type()
            record = self.store.get_record(uuid, waiter)
            if record is not None and record.get("status") in statuses:
                return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            yield partial(waiter.wait, remaining)

    def _counts(self) -> dict[str, int]:
        return self.store.status_counts()

    def _list(
        self, status: str | None, task_name: str | None, limit: int, offset: int
    ) -> list[dict[str, str]]:
        records = [
            r
            for r in self.store.all_records()
            if (status is None or r.get("status") == status)
            and (task_name is None or r.get("task_name") == task_name)
        ]
        records.sort(key=lambda r: float(r.get("created_at", 0)), reverse=True)
        return records[offset : offset + limit]


class SyncMemoryStorage(_MemoryStorage, SyncStorage):
    def _default_global_config(self, name: str, url: str | None) -> Any:
        from qtasks.configs.memory import SyncMemoryGlobalConfig

        return SyncMemoryGlobalConfig(name=name, url=url)

    def _wait_final(
        self, uuid: str, timeout: float, statuses: frozenset[str]
    ) -> dict[str, str] | None:
        from qtasks._drive import run_sync

        return run_sync(self._wait_final_flow(uuid, timeout, statuses))


class AsyncMemoryStorage(_MemoryStorage, AsyncStorage):
    _waiter_type: ClassVar[type[Any]] = AsyncWaiter

    def _default_global_config(self, name: str, url: str | None) -> Any:
        from qtasks.configs.memory import AsyncMemoryGlobalConfig

        return AsyncMemoryGlobalConfig(name=name, url=url)

    async def _wait_final(
        self, uuid: str, timeout: float, statuses: frozenset[str]
    ) -> dict[str, str] | None:
        from qtasks._drive import run_async

        return await run_async(self._wait_final_flow(uuid, timeout, statuses))
