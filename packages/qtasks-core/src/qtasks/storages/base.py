"""Storage interface: where task records live.

A conforming storage keeps one record per task id as a flat string mapping
(`qtasks.schemas.task.to_mapping`), lets a reader wait for a record to reach a final status without
polling, gives finished records a TTL (`config.result_ttl`), and never loses a record it accepted.
Implement the `_`-prefixed primitives; the public methods (fired triggers, decoding) are shared by
the sync and async flavours through one flow each.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from qtasks._drive import Flow, run_async, run_sync
from qtasks.base.component import Component
from qtasks.schemas.task import Task, from_mapping, id_text, to_mapping

if TYPE_CHECKING:
    from qtasks.configs.base import BaseGlobalConfig
    from qtasks.schemas.envelope import Envelope


class BaseStorage(Component):
    component: ClassVar[str] = "storage"
    url_schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, name: str = "QueueTasks", global_config: BaseGlobalConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.global_config: Any = global_config
        self.app: Any = None  # set by the app: records it returns can wait on it

    # -- primitives ---------------------------------------------------------------------------
    @abstractmethod
    def _put(self, uuid: str, mapping: dict[str, str]) -> Any:
        """Write a whole record (replacing any)."""

    @abstractmethod
    def _update(self, uuid: str, fields: dict[str, str]) -> Any:
        """Merge fields into an existing record."""

    @abstractmethod
    def _get(self, uuid: str) -> Any:
        """The record mapping, or None."""

    @abstractmethod
    def _all(self) -> Any:
        """Every record mapping (used by `get_all`; storages may page)."""

    @abstractmethod
    def _wait_final(self, uuid: str, timeout: float, statuses: frozenset[str]) -> Any:
        """The mapping once its status is in `statuses`, or None after `timeout` seconds.
        Must be woken by the write, not by a timer."""

    @abstractmethod
    def _delete_finished(self) -> Any:
        """Delete finished records; return how many."""

    @abstractmethod
    def _flush(self) -> Any:
        """Delete every record of this app."""

    def _start(self) -> Any:
        return None

    def _stop(self) -> Any:
        return None

    def _update_steps(self, uuid: str, fields: dict[str, str]) -> Flow[Any]:
        """`_update` as steps of the caller's flow; a storage whose `_update` is itself a flow
        overrides this (one driver per call instead of two: a worker updates every task)."""
        return (yield partial(self._update, uuid, fields))

    # -- shared flows -----------------------------------------------------------------------------
    def _decode(self, mapping: dict[str, str] | None) -> Task | None:
        return None if mapping is None else from_mapping(mapping, self.app)

    def prepare_add(self, uuid: str, task_status: Task) -> Flow[tuple[str, Task]]:
        """The `storage_add` trigger; brokers that write records themselves run it too."""
        if not self.plugins.wants("storage_add"):
            return uuid, task_status
        out = yield from self.plugins.storage(
            "storage_add", storage=self, uuid=uuid, task_status=task_status
        )
        return out["uuid"], out["task_status"]

    def _add_flow(self, uuid: str, task_status: Task) -> Flow[None]:
        uuid, task_status = yield from self.prepare_add(uuid, task_status)
        yield partial(self._put, uuid, to_mapping(task_status))

    def _get_flow(self, uuid: str) -> Flow[Task | None]:
        task = self._decode((yield partial(self._get, str(uuid))))
        if task is not None:
            task = (yield from self.plugins.storage("storage_get", storage=self, result=task))[
                "result"
            ]
        return task

    def _get_all_flow(self) -> Flow[list[Task]]:
        mappings = yield self._all
        results = [from_mapping(m, self.app) for m in mappings]
        out = yield from self.plugins.storage("storage_get_all", storage=self, results=results)
        return list(out["results"])

    def _update_flow(self, kwargs: dict[str, Any]) -> Flow[None]:
        kwargs = (yield from self.plugins.storage("storage_update", storage=self, kw=kwargs))["kw"]
        name = str(kwargs["name"])
        mapping = {k: str(v) for k, v in dict(kwargs["mapping"]).items()}
        mapping.setdefault("updated_at", repr(time.time()))
        yield partial(self._update, name, mapping)

    def _add_process_flow(self, task_data: Task, priority: int) -> Flow[None]:
        handle = yield from self._add_process_begin(task_data, priority)
        yield from self._update_end(handle)

    def _add_process_begin(self, task_data: Task, priority: int) -> Flow[Any]:
        """The `storage_add_process` trigger and the `process` mark; -> a handle for
        `_update_end`. A worker begins the mark, runs the task and ends the mark after the
        final write, so a storage that can write behind does not delay the task by it."""
        task = task_data
        if self.plugins.wants("storage_add_process"):
            out = yield from self.plugins.storage(
                "storage_add_process", storage=self, task_data=task_data, priority=priority
            )
            task = out["task_data"]
        fields = {"status": "process", "updated_at": repr(time.time())}
        if task.started_at is not None:
            fields["started_at"] = repr(task.started_at.timestamp())
        if task.worker is not None:
            fields["worker"] = task.worker
        return (yield from self._update_begin(id_text(task), fields))

    def _update_begin(self, uuid: str, fields: dict[str, str]) -> Flow[Any]:
        """Start `_update`; by default it is done here and the handle is None. A storage that
        writes behind returns a handle and finishes in `_update_end`, where the update is
        known to be written before any write submitted after it."""
        yield from self._update_steps(uuid, fields)
        return None

    def _update_end(self, handle: Any) -> Flow[None]:
        return
        yield

    def _remove_finished_flow(self, task_broker: Envelope, model: Task) -> Flow[None]:
        if not self.plugins.wants("storage_remove_finished_task"):
            return
        yield from self.plugins.storage(
            "storage_remove_finished_task", storage=self, task_broker=task_broker, model=model
        )

    def _running_older_flow(self, worker: Any, envelopes: list[Envelope]) -> Flow[None]:
        for env in envelopes:
            yield from self.plugins.storage(
                "storage_running_older_tasks",
                storage=self,
                worker=worker,
                task_name=env.task,
                uuid=env.id,
                priority=env.priority,
                created_at=env.created_at,
                args=env.args,
                kw=env.kwargs,
            )

    def _delete_finished_flow(self) -> Flow[int]:
        yield from self.plugins.storage("storage_delete_finished_tasks", storage=self)
        return int((yield self._delete_finished))

    def _flush_flow(self) -> Flow[None]:
        yield from self.plugins.storage("storage_flush_all", storage=self)
        yield self._flush

    def _wait_flow(
        self, uuid: str, timeout: float, statuses: frozenset[str], fresh: bool = False
    ) -> Flow[Task | None]:
        """`fresh`: the caller just enqueued the task (a storage may skip its first read)."""
        return self._decode((yield from self._wait_steps(str(uuid), timeout, statuses, fresh)))

    def _wait_steps(
        self, uuid: str, timeout: float, statuses: frozenset[str], fresh: bool
    ) -> Flow[Any]:
        """`_wait_final` as steps of the caller's flow (a storage whose wait is a flow
        overrides this and may use `fresh`)."""
        return (yield partial(self._wait_final, uuid, timeout, statuses))

    def _start_flow(self) -> Flow[None]:
        if self.global_config is not None:
            yield self.global_config.start
        yield self._start
        yield from self.plugins.storage("storage_start", storage=self)

    def _stop_flow(self) -> Flow[None]:
        yield from self.plugins.storage("storage_stop", storage=self)
        yield self._stop
        if self.global_config is not None:
            yield self.global_config.stop

    # -- listings (stats, CLI, web view); optional for third-party storages ----------------------
    def _counts(self) -> Any:
        """Records per status. -> dict[str, int]"""
        raise NotImplementedError(f"{type(self).__name__} does not count records")

    def _list(self, status: str | None, task_name: str | None, limit: int, offset: int) -> Any:
        """Record mappings, newest first, filtered by status and task name (no KEYS scan)."""
        raise NotImplementedError(f"{type(self).__name__} does not list records")

    def _list_flow(
        self, status: str | None, task_name: str | None, limit: int, offset: int
    ) -> Flow[list[Task]]:
        mappings = yield partial(self._list, status, task_name, limit, offset)
        return [from_mapping(m, self.app) for m in mappings]

    def _counts_flow(self) -> Flow[dict[str, int]]:
        return dict((yield self._counts))


class SyncStorage(BaseStorage):
    """Storage for the sync app: every method blocks and returns its value."""

    def add(self, uuid: str, task_status: Task) -> None:
        run_sync(self._add_flow(uuid, task_status))

    def get(self, uuid: str) -> Task | None:
        return run_sync(self._get_flow(uuid))

    def get_all(self) -> list[Task]:
        return run_sync(self._get_all_flow())

    def update(self, **kwargs: Any) -> None:
        run_sync(self._update_flow(kwargs))

    def add_process(self, task_data: Task, priority: int) -> None:
        run_sync(self._add_process_flow(task_data, priority))

    def remove_finished_task(self, task_broker: Envelope, model: Task) -> None:
        run_sync(self._remove_finished_flow(task_broker, model))

    def running_older_tasks(self, worker: Any, envelopes: list[Envelope]) -> None:
        run_sync(self._running_older_flow(worker, envelopes))

    def delete_finished_tasks(self) -> int:
        return run_sync(self._delete_finished_flow())

    def flush_all(self) -> None:
        run_sync(self._flush_flow())

    def wait(self, uuid: str, timeout: float, statuses: frozenset[str]) -> Task | None:
        return run_sync(self._wait_flow(uuid, timeout, statuses))

    def counts(self) -> dict[str, int]:
        """Records per status."""
        return run_sync(self._counts_flow())

    def list(
        self,
        status: str | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Task]:
        """Records, newest first, by status and/or task name."""
        return run_sync(self._list_flow(status, task_name, limit, offset))

    def start(self) -> None:
        run_sync(self._start_flow())

    def stop(self) -> None:
        run_sync(self._stop_flow())


class AsyncStorage(BaseStorage):
    """Storage for the asyncio app: every method is a coroutine."""

    is_async: ClassVar[bool] = True

    async def add(self, uuid: str, task_status: Task) -> None:
        await run_async(self._add_flow(uuid, task_status))

    async def get(self, uuid: str) -> Task | None:
        return await run_async(self._get_flow(uuid))

    async def get_all(self) -> list[Task]:
        return await run_async(self._get_all_flow())

    async def update(self, **kwargs: Any) -> None:
        await run_async(self._update_flow(kwargs))

    async def add_process(self, task_data: Task, priority: int) -> None:
        await run_async(self._add_process_flow(task_data, priority))

    async def remove_finished_task(self, task_broker: Envelope, model: Task) -> None:
        await run_async(self._remove_finished_flow(task_broker, model))

    async def running_older_tasks(self, worker: Any, envelopes: list[Envelope]) -> None:
        await run_async(self._running_older_flow(worker, envelopes))

    async def delete_finished_tasks(self) -> int:
        return await run_async(self._delete_finished_flow())

    async def flush_all(self) -> None:
        await run_async(self._flush_flow())

    async def wait(self, uuid: str, timeout: float, statuses: frozenset[str]) -> Task | None:
        return await run_async(self._wait_flow(uuid, timeout, statuses))

    async def counts(self) -> dict[str, int]:
        """Records per status."""
        return await run_async(self._counts_flow())

    async def list(
        self,
        status: str | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Task]:
        """Records, newest first, by status and/or task name."""
        return await run_async(self._list_flow(status, task_name, limit, offset))

    async def start(self) -> None:
        await run_async(self._start_flow())

    async def stop(self) -> None:
        await run_async(self._stop_flow())
