"""In-memory brokers: the embedded default, for one process (`memory://NAME`).

Everything with one app name in one process shares a `MemoryStore`, so a producer app and a
worker app built separately (as in tests) see the same queue.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlsplit

from qtasks._drive import Flow, run_async, run_sync
from qtasks._waiters import AsyncWaiter, ThreadWaiter
from qtasks.brokers.base import AsyncBroker, BaseBroker, SyncBroker
from qtasks.memory.store import MemoryStore, cancelled_mapping, get_store
from qtasks.schemas.delivery import DeadEntry, Delivery
from qtasks.schemas.envelope import Envelope
from qtasks.schemas.task import Task


def store_name(name: str, url: str | None) -> str:
    """`memory://other` selects the store `other`; plain `memory://` the app's name."""
    if url:
        host = urlsplit(url).netloc or urlsplit(url).path.strip("/")
        if host:
            return host
    return name


class _MemoryBroker(BaseBroker):
    url_schemes: ClassVar[tuple[str, ...]] = ("memory",)
    _waiter_type: ClassVar[type[Any]] = ThreadWaiter

    def __init__(
        self, name: str = "QueueTasks", url: str | None = None, storage: Any = None, **kwargs: Any
    ) -> None:
        self.store: MemoryStore = get_store(store_name(name, url))
        self._interrupted = False
        super().__init__(name=name, url=url, storage=storage, **kwargs)

    def _enqueue(self, items: list[tuple[Envelope, bytes, Task]]) -> list[bool]:
        from qtasks.schemas.task import to_mapping

        return self.store.enqueue((env, to_mapping(model)) for env, _, model in items)

    def _claim_flow(
        self, worker_id: str, limit: int, timeout: float, queues: list[str]
    ) -> Flow[list[Delivery]]:
        deadline = time.monotonic() + timeout
        while True:
            waiter = self._waiter_type()
            out, next_eta = self.store.claim(
                worker_id, limit, queues, self.config.lease_timeout, waiter
            )
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._interrupted:
                return []
            if next_eta is not None:
                remaining = min(remaining, max(0.0, next_eta - time.time()))
            yield partial(waiter.wait, remaining)

    def _finish(self, delivery: Delivery, mapping: dict[str, str]) -> bool:
        return self.store.finish(delivery, mapping, self.config.result_ttl)

    def _requeue(self, delivery: Delivery, eta: float | None) -> bool:
        return self.store.requeue(delivery, eta, self.config.result_ttl)

    def _reap(self) -> tuple[list[tuple[str, int]], list[DeadEntry]]:
        return self.store.reap(self.config.max_recoveries, self.config.result_ttl)

    def _cancel(self, uuid: str, reason: str | None) -> str:
        return self.store.cancel(
            uuid, reason, partial(cancelled_mapping, reason=reason), self.config.result_ttl
        )

    def _dead_letter(
        self, delivery: Delivery, reason: str, sample: str, mapping: dict[str, str] | None
    ) -> bool:
        return self.store.dead_letter(delivery, reason, sample, mapping, self.config.result_ttl)

    def _flush(self) -> None:
        self.store.flush()

    def _start(self) -> None:
        self._interrupted = False
        if self.notify_cancel not in self.store.cancel_listeners:
            self.store.cancel_listeners.append(self.notify_cancel)

    def _stop(self) -> None:
        if self.notify_cancel in self.store.cancel_listeners:
            self.store.cancel_listeners.remove(self.notify_cancel)

    def interrupt(self) -> None:
        self._interrupted = True
        with self.store.lock:
            waiters, self.store.consumer_waiters = self.store.consumer_waiters, []
        for waiter in waiters:
            waiter.wake()

    def _stats(self) -> dict[str, Any]:
        return self.store.stats()

    def _list_dead(self, limit: int, offset: int) -> list[DeadEntry]:
        with self.store.lock:
            entries = sorted(self.store.dead.values(), key=lambda e: e.at, reverse=True)
        return entries[offset : offset + limit]

    def _retry_dead(self, uuid: str) -> bool:
        return self.store.retry_dead(uuid)

    def _purge_dead(self, uuid: str | None) -> int:
        return self.store.purge_dead(uuid)

    def _purge_queue(self, queue: str) -> int:
        return self.store.purge_queue(
            queue, partial(cancelled_mapping, reason="purged"), self.config.result_ttl
        )


class SyncMemoryBroker(_MemoryBroker, SyncBroker):
    """In-memory broker for the sync app."""

    def _default_storage(self) -> Any:
        from qtasks.storages.memory import SyncMemoryStorage

        return SyncMemoryStorage(name=self.name, url=self.url)

    def claim(
        self, worker_id: str, limit: int, timeout: float, queues: list[str]
    ) -> list[Delivery]:
        return run_sync(self._claim_flow(worker_id, limit, timeout, queues))

    def heartbeat(self, worker_id: str, leases: dict[str, str]) -> list[str]:
        return self.store.heartbeat(worker_id, leases, self.config.lease_timeout)


class AsyncMemoryBroker(_MemoryBroker, AsyncBroker):
    """In-memory broker for the asyncio app."""

    _waiter_type: ClassVar[type[Any]] = AsyncWaiter

    def _default_storage(self) -> Any:
        from qtasks.storages.memory import AsyncMemoryStorage

        return AsyncMemoryStorage(name=self.name, url=self.url)

    async def claim(
        self, worker_id: str, limit: int, timeout: float, queues: list[str]
    ) -> list[Delivery]:
        return await run_async(self._claim_flow(worker_id, limit, timeout, queues))

    async def heartbeat(self, worker_id: str, leases: dict[str, str]) -> list[str]:
        return self.store.heartbeat(worker_id, leases, self.config.lease_timeout)
