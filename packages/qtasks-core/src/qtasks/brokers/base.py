"""Broker interface: at-least-once delivery with leases.

What a conforming broker guarantees:

* `add` writes the `new` record and the queue entry together (atomically), and is idempotent by
  task id: a retried enqueue never queues a task twice.
* `claim` is atomic: each queued task goes to one worker, highest priority first (lower number),
  FIFO within a priority, never before its `eta`, with a lease (owner, token, deadline).
* A task stays in the broker until `remove_finished_task` writes its final record; that write
  checks the lease token, so a worker that lost its lease cannot overwrite its successor's record.
* `heartbeat` renews leases; `reap` returns lapsed leases to the queue, counting recoveries, and
  dead-letters a task past `config.max_recoveries`.
* Malformed entries never reach a worker: they are dead-lettered with a reason and a sample.

Implement the `_`-prefixed primitives (and `claim`, `heartbeat`); the public methods are flows
shared by the sync and async flavours.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from qtasks._discovery import redact_url
from qtasks._drive import Flow, run_async, run_sync
from qtasks.base.component import Component
from qtasks.schemas.delivery import DeadEntry, Delivery
from qtasks.schemas.envelope import Envelope, encode, encodes_surely
from qtasks.schemas.ids import new_task_id
from qtasks.schemas.options import check_name, check_options, check_priority
from qtasks.schemas.task import Task, new_record, to_mapping

if TYPE_CHECKING:
    from qtasks.storages.base import BaseStorage

CancelListener = Callable[[str, "str | None"], None]
Staged = tuple[Envelope, "bytes | None", "Task | None"]
"""A validated task on its way into a broker: envelope, payload (None when `encodes_surely`: the
broker encodes it as it writes) and its record (None when no plugin looked at it first: the
broker makes it with `new_record` as it writes)."""


class BaseBroker(Component):
    component: ClassVar[str] = "broker"
    url_schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        name: str = "QueueTasks",
        url: str | None = None,
        storage: BaseStorage | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.url = url
        self.storage: Any = storage if storage is not None else self._default_storage()
        self.cancel_listeners: list[CancelListener] = []

    def _default_storage(self) -> BaseStorage:
        raise NotImplementedError(f"{type(self).__name__} needs a storage")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} url={redact_url(self.url)!r}>"

    def bind(self, plugins: Any, config: Any, events: Any) -> None:
        super().bind(plugins, config, events)
        self.storage.bind(plugins, config, events)
        if self.storage.global_config is not None:
            self.storage.global_config.bind(plugins, config, events)

    # -- primitives -----------------------------------------------------------------------------
    @abstractmethod
    def _enqueue(self, items: list[tuple[Envelope, bytes, Task]]) -> Any:
        """Write records and queue entries atomically; skip ids that exist. -> list[bool]"""

    @abstractmethod
    def claim(self, worker_id: str, limit: int, timeout: float, queues: list[str]) -> Any:
        """Up to `limit` deliveries; blocks up to `timeout` s when none is ready."""

    @abstractmethod
    def heartbeat(self, worker_id: str, leases: dict[str, str]) -> Any:
        """Renew `{task id: token}` leases; returns the ids whose lease was lost."""

    @abstractmethod
    def _finish(self, delivery: Delivery, mapping: dict[str, str]) -> Any:
        """Final record + acknowledgement, only if the lease token still matches. -> bool"""

    @abstractmethod
    def _requeue(self, delivery: Delivery, eta: float | None) -> Any:
        """Return a claimed task to its queue (not counted as a recovery). -> bool"""

    @abstractmethod
    def _reap(self) -> Any:
        """Return lapsed leases. -> (list of (id, recoveries), list of DeadEntry)"""

    @abstractmethod
    def _cancel(self, uuid: str, reason: str | None) -> Any:
        """Cancel: 'cancelled' (was queued), 'signalled' (running), 'final' or 'unknown'."""

    @abstractmethod
    def _dead_letter(
        self, delivery: Delivery, reason: str, sample: str, mapping: dict[str, str] | None
    ) -> Any:
        """Move a claimed task to the dead-letter set (with its final record). -> bool"""

    @abstractmethod
    def _flush(self) -> Any:
        """Delete every queue, lease and dead letter of this app."""

    def _start(self) -> Any:
        return None

    def _stop(self) -> Any:
        return None

    # A broker whose primitives are themselves flows overrides these to run them as steps of
    # the caller's flow: one driver per call instead of two (they are on every task's path).
    def _enqueue_steps(self, items: list[Staged]) -> Flow[list[Task]]:
        """`_enqueue` with the records not made yet made first; -> every item's record."""
        max_bytes = self.config.max_payload_bytes
        written = [
            (env, encode(env, max_bytes) if payload is None else payload, model or new_record(env))
            for env, payload, model in items
        ]
        yield partial(self._enqueue, written)
        return [model for _, _, model in written]

    def _finish_steps(self, delivery: Delivery, mapping: dict[str, str]) -> Flow[Any]:
        return (yield partial(self._finish, delivery, mapping))

    def interrupt(self) -> Any:
        """Wake blocked `claim` calls (used when a worker stops)."""
        return None

    # -- administration (stats, CLI, web view); optional for third-party brokers ----------------
    def _stats(self) -> Any:
        """`{"queues": {name: {"ready": n, "delayed": n, "priorities": {"0": n}}},
        "processing": n, "dead": n, "finished_last_minute": n}`"""
        raise NotImplementedError(f"{type(self).__name__} does not report stats")

    def _list_dead(self, limit: int, offset: int) -> Any:
        """Dead-letter entries, newest first. -> list[DeadEntry]"""
        raise NotImplementedError(f"{type(self).__name__} does not list dead letters")

    def _retry_dead(self, uuid: str) -> Any:
        """Put a dead-lettered task back in its queue (status new). -> bool"""
        raise NotImplementedError(f"{type(self).__name__} cannot retry dead letters")

    def _purge_dead(self, uuid: str | None) -> Any:
        """Delete one dead letter, or all of them. -> int"""
        raise NotImplementedError(f"{type(self).__name__} cannot purge dead letters")

    def _purge_queue(self, queue: str) -> Any:
        """Remove every queued (not running) task of `queue`; records become `cancel`. -> int"""
        raise NotImplementedError(f"{type(self).__name__} cannot purge queues")

    # -- shared flows ---------------------------------------------------------------------------
    def make_envelope(
        self,
        task_name: str,
        priority: int = 0,
        extra: dict[str, Any] | None = None,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        uuid: str | None = None,
        eta: float | None = None,
        queue: str | None = None,
        headers: dict[str, str] | None = None,
        attempt: int = 0,
        retry: int | None = None,
        parent: str | None = None,
        _checked: bool = False,
    ) -> Envelope:
        """A new task's envelope, its name and options checked (`TaskOptionError`).
        `_checked`: the app's enqueue path, which checked its caller's values where they came
        in (once per task)."""
        if not _checked:
            check_name(task_name)
            priority = check_priority(priority, f"task {task_name!r}")
            priority, eta, queue = check_options(task_name, priority, eta, queue, headers, extra)
        made = None
        if not uuid:
            made, uuid = new_task_id()
        return Envelope(
            id=uuid,
            task=task_name,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            priority=priority,
            queue=queue or "default",
            eta=eta,
            created_at=time.time(),
            attempt=attempt,
            retry=retry,
            parent=parent,
            headers=dict(headers or {}),
            extra=dict(extra or {}),
            made_uuid=made,
        )

    def _add_many_flow(self, envelopes: list[Envelope]) -> Flow[list[Task]]:
        items: list[Staged] = []
        plugins = self.plugins
        # Triggers nobody listens to are skipped before their arguments are built (hot path).
        before = plugins.wants("broker_add_before")
        # Records no plugin sees before the write are made as they are written: a streaming
        # broker makes a bulk's records while Redis files the ones before (`_enqueue_steps`).
        hooked = before or plugins.wants("storage_add")
        max_bytes = self.config.max_payload_bytes
        for env in envelopes:
            # A typed error, before anything is written. An envelope that cannot fail to
            # encode is encoded as its call is built: a streamed bulk does it while Redis
            # files the calls before (the checks up front are the one part not overlapped).
            payload = None if encodes_surely(env, max_bytes) else encode(env, max_bytes)
            if not hooked:
                items.append((env, payload, None))
                continue
            model = new_record(env)
            if before:
                model = (
                    yield from plugins.broker(
                        "broker_add_before", broker=self, storage=self.storage, model=model
                    )
                )["model"]
            _, model = yield from self.storage.prepare_add(env.id, model)
            items.append((env, payload, model))
        models = yield from self._enqueue_steps(items)
        app = self.storage.app
        for model in models:
            model._app = app
        if plugins.wants("broker_add_after"):
            for model in models:
                yield from plugins.broker(
                    "broker_add_after", broker=self, storage=self.storage, model=model
                )
        return models

    def _add_flow(self, envelope: Envelope) -> Flow[Task]:
        return (yield from self._add_many_flow([envelope]))[0]

    def _get_flow(self, uuid: str) -> Flow[Task | None]:
        task: Task | None = yield from self.storage._get_flow(uuid)
        if self.plugins.wants("broker_get"):
            task = (yield from self.plugins.broker("broker_get", broker=self, task=task))["task"]
        return task

    def _update_flow(self, kwargs: dict[str, Any]) -> Flow[None]:
        kwargs = (yield from self.plugins.broker("broker_update", broker=self, kw=kwargs))["kw"]
        yield from self.storage._update_flow(kwargs)

    def _finish_flow(self, delivery: Delivery, model: Task) -> Flow[bool]:
        if self.plugins.wants("broker_remove_finished_task"):
            model = (
                yield from self.plugins.broker(
                    "broker_remove_finished_task", broker=self, storage=self.storage, model=model
                )
            )["model"]
        done = bool((yield from self._finish_steps(delivery, to_mapping(model))))
        if done:
            yield from self.storage._remove_finished_flow(delivery.envelope, model)
        return done

    def _requeue_flow(self, delivery: Delivery, eta: float | None) -> Flow[bool]:
        return bool((yield partial(self._requeue, delivery, eta)))

    def _mark_started_flow(self, delivery: Delivery) -> Flow[None]:
        """Make it durable that a task which lapsed before is starting now, so that only
        crashes while it ran count toward poison. The worker awaits this before running a
        suspect (`delivery.recoveries > 0`). A broker whose leases cannot outlive their
        process (the in-memory one) has nothing to record."""
        return None
        yield  # pragma: no cover - makes this a generator

    def _dead_letter_flow(
        self, delivery: Delivery, reason: str, sample: str, model: Task | None
    ) -> Flow[bool]:
        mapping = None if model is None else to_mapping(model)
        done = bool((yield partial(self._dead_letter, delivery, reason, sample, mapping)))
        if done:
            yield from self.plugins.broker(
                "broker_task_dead",
                broker=self,
                uuid=delivery.envelope.id,
                reason=reason,
                sample=sample,
            )
        return done

    def _reap_flow(self) -> Flow[int]:
        return len((yield from self._reap_ids_flow()))

    def _reap_ids_flow(self) -> Flow[list[str]]:
        """Reap lapsed leases; returns the ids returned to the queue."""
        recovered, dead = yield self._reap
        for uuid, count in recovered:
            self.log.warning("task %s recovered from a lapsed lease (recovery %d)", uuid, count)
            yield from self.plugins.broker(
                "broker_task_recovered", broker=self, uuid=uuid, recoveries=count
            )
        entry: DeadEntry
        for entry in dead:
            self.log.error("task %s dead-lettered: %s", entry.uuid, entry.reason)
            yield from self.plugins.broker(
                "broker_task_dead",
                broker=self,
                uuid=entry.uuid,
                reason=entry.reason,
                sample=entry.sample,
            )
        return [uuid for uuid, _ in recovered]

    def _running_older_flow(self, worker: Any) -> Flow[int]:
        """Start-up recovery (`config.running_older_tasks`): return lapsed leases at once and
        tell storage plugins which tasks came back."""
        yield from self.plugins.broker("broker_running_older_tasks", broker=self, worker=worker)
        recovered = yield from self._reap_ids_flow()
        if recovered and self.plugins.wants("storage_running_older_tasks"):
            envelopes = []
            for uuid in recovered:
                record: Task | None = yield from self.storage._get_flow(uuid)
                if record is not None:
                    envelopes.append(
                        Envelope(
                            id=uuid,
                            task=record.task_name,
                            args=list(record.args),
                            kwargs=record.kwargs,
                            priority=record.priority,
                            created_at=record.created_at.timestamp(),
                        )
                    )
            yield from self.storage._running_older_flow(worker, envelopes)
        return len(recovered)

    def _cancel_flow(self, uuid: str, reason: str | None) -> Flow[str]:
        return str((yield partial(self._cancel, str(uuid), reason)))

    def notify_cancel(self, uuid: str, reason: str | None) -> None:
        """Concrete brokers call this when they learn that a running task was cancelled."""
        for listener in list(self.cancel_listeners):
            listener(uuid, reason)

    def _listen_flow(self, worker: Any) -> Flow[None]:
        """The consume loop: claim only what the worker can start soon, hand it over."""
        yield from self.plugins.broker("broker_listen_start", broker=self, worker=worker)
        failures = 0
        while worker.running:
            free = yield worker.wait_capacity
            if not free or not worker.running:
                break
            try:
                deliveries = yield partial(
                    self.claim, worker.worker_id, free, self.config.block_timeout, worker.queues
                )
            except BaseException as exc:
                # What it reserved goes back: a stop that cancels a claim under way must not
                # leave the worker's next run with no capacity.
                worker.release(free)
                if not isinstance(exc, Exception):
                    raise
                # Workers survive broker outages: back off and claim again.
                failures += 1
                delay = min(0.05 * 2 ** min(failures, 6), 2.0)
                # The first failure of a run is a warning; the retries of the same outage are
                # debug noise (the broker logs the outage's start and end once each).
                self.log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "claim failed (%s); retrying in %.2fs",
                    type(exc).__name__,
                    delay,
                )
                yield partial(worker.pause, delay)
                continue
            failures = 0
            worker.release(free - len(deliveries))  # each handed-over task uses one
            for delivery in deliveries:
                if self.plugins.wants("broker_add_worker"):
                    env = delivery.envelope
                    out = yield from self.plugins.broker(
                        "broker_add_worker",
                        broker=self,
                        worker=worker,
                        task_name=env.task,
                        uuid=env.id,
                        priority=env.priority,
                        args=env.args,
                        kw=env.kwargs,
                        created_at=env.created_at,
                    )
                    env.task, env.priority = out["task_name"], out["priority"]
                    env.args, env.kwargs = out["args"], out["kw"]
                yield partial(worker.add, delivery)

    def _start_flow(self, worker: Any) -> Flow[None]:
        yield self.storage.start
        yield self._start
        if self.config.delete_finished_tasks:
            yield self.storage.delete_finished_tasks
        if self.config.running_older_tasks and worker is not None:
            yield from self._running_older_flow(worker)
        yield from self.plugins.broker("broker_start", broker=self, worker=worker)

    def _stop_flow(self) -> Flow[None]:
        yield from self.plugins.broker("broker_stop", broker=self)
        yield self._stop
        yield self.storage.stop

    def _admin_flow(self, primitive: Any, *args: Any) -> Flow[Any]:
        return (yield partial(primitive, *args))

    def _flush_flow(self) -> Flow[None]:
        yield from self.plugins.broker("broker_flush_all", broker=self)
        yield self._flush
        yield from self.storage._flush_flow()


class SyncBroker(BaseBroker):
    """Broker for the sync app and `SyncThreadWorker`."""

    def add(
        self,
        task_name: str,
        priority: int = 0,
        extra: dict[str, Any] | None = None,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Task:
        env = self.make_envelope(task_name, priority, extra, args, kwargs, **options)
        return run_sync(self._add_flow(env))

    def add_many(self, envelopes: list[Envelope]) -> list[Task]:
        return run_sync(self._add_many_flow(envelopes))

    def get(self, uuid: str) -> Task | None:
        return run_sync(self._get_flow(uuid))

    def update(self, **kwargs: Any) -> None:
        run_sync(self._update_flow(kwargs))

    def remove_finished_task(self, delivery: Delivery, model: Task) -> bool:
        return run_sync(self._finish_flow(delivery, model))

    def requeue(self, delivery: Delivery, eta: float | None = None) -> bool:
        return run_sync(self._requeue_flow(delivery, eta))

    def dead_letter(
        self, delivery: Delivery, reason: str, sample: str, model: Task | None = None
    ) -> bool:
        return run_sync(self._dead_letter_flow(delivery, reason, sample, model))

    def reap(self) -> int:
        return run_sync(self._reap_flow())

    def running_older_tasks(self, worker: Any) -> int:
        return run_sync(self._running_older_flow(worker))

    def cancel(self, uuid: str, reason: str | None = None) -> str:
        return run_sync(self._cancel_flow(uuid, reason))

    def listen(self, worker: Any) -> None:
        run_sync(self._listen_flow(worker))

    def start(self, worker: Any = None) -> None:
        run_sync(self._start_flow(worker))

    def stop(self) -> None:
        run_sync(self._stop_flow())

    def flush_all(self) -> None:
        run_sync(self._flush_flow())

    def stats(self) -> dict[str, Any]:
        """Queue depths per queue and priority, running, dead, finished in the last minute."""
        return dict(run_sync(self._admin_flow(self._stats)))

    def list_dead(self, limit: int = 100, offset: int = 0) -> list[DeadEntry]:
        return list(run_sync(self._admin_flow(self._list_dead, limit, offset)))

    def retry_dead(self, uuid: str) -> bool:
        return bool(run_sync(self._admin_flow(self._retry_dead, str(uuid))))

    def purge_dead(self, uuid: str | None = None) -> int:
        return int(run_sync(self._admin_flow(self._purge_dead, uuid)))

    def purge_queue(self, queue: str = "default") -> int:
        return int(run_sync(self._admin_flow(self._purge_queue, queue)))


class AsyncBroker(BaseBroker):
    """Broker for the asyncio app and `AsyncWorker`."""

    is_async: ClassVar[bool] = True

    async def add(
        self,
        task_name: str,
        priority: int = 0,
        extra: dict[str, Any] | None = None,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Task:
        env = self.make_envelope(task_name, priority, extra, args, kwargs, **options)
        return await run_async(self._add_flow(env))

    async def add_many(self, envelopes: list[Envelope]) -> list[Task]:
        return await run_async(self._add_many_flow(envelopes))

    async def get(self, uuid: str) -> Task | None:
        return await run_async(self._get_flow(uuid))

    async def update(self, **kwargs: Any) -> None:
        await run_async(self._update_flow(kwargs))

    async def remove_finished_task(self, delivery: Delivery, model: Task) -> bool:
        return await run_async(self._finish_flow(delivery, model))

    async def requeue(self, delivery: Delivery, eta: float | None = None) -> bool:
        return await run_async(self._requeue_flow(delivery, eta))

    async def dead_letter(
        self, delivery: Delivery, reason: str, sample: str, model: Task | None = None
    ) -> bool:
        return await run_async(self._dead_letter_flow(delivery, reason, sample, model))

    async def reap(self) -> int:
        return await run_async(self._reap_flow())

    async def running_older_tasks(self, worker: Any) -> int:
        return await run_async(self._running_older_flow(worker))

    async def cancel(self, uuid: str, reason: str | None = None) -> str:
        return await run_async(self._cancel_flow(uuid, reason))

    async def listen(self, worker: Any) -> None:
        await run_async(self._listen_flow(worker))

    async def start(self, worker: Any = None) -> None:
        await run_async(self._start_flow(worker))

    async def stop(self) -> None:
        await run_async(self._stop_flow())

    async def flush_all(self) -> None:
        await run_async(self._flush_flow())

    async def stats(self) -> dict[str, Any]:
        """Queue depths per queue and priority, running, dead, finished in the last minute."""
        return dict(await run_async(self._admin_flow(self._stats)))

    async def list_dead(self, limit: int = 100, offset: int = 0) -> list[DeadEntry]:
        return list(await run_async(self._admin_flow(self._list_dead, limit, offset)))

    async def retry_dead(self, uuid: str) -> bool:
        return bool(await run_async(self._admin_flow(self._retry_dead, str(uuid))))

    async def purge_dead(self, uuid: str | None = None) -> int:
        return int(await run_async(self._admin_flow(self._purge_dead, uuid)))

    async def purge_queue(self, queue: str = "default") -> int:
        return int(await run_async(self._admin_flow(self._purge_queue, queue)))
