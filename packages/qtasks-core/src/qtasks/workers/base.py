"""Worker interface and the logic both workers share.

A worker claims only what it can start soon (`max_tasks_process` running plus `prefetch`
buffered), runs the best priority first, renews its leases by heartbeat, reaps lapsed leases of
dead workers, and writes each task's final record through the broker's fenced write. What a task
goes through is one flow (`_process_flow`); `AsyncWorker` and `SyncThreadWorker` only differ in
how they wait, start and interrupt.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
import traceback
import uuid as uuidlib
from abc import abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from qtasks._drive import Flow
from qtasks.base.component import Component
from qtasks.configs.base import WORKERS_NAME
from qtasks.enums import STATUS_CANCEL, STATUS_ERROR, STATUS_PROCESS, STATUS_SUCCESS
from qtasks.exc import TaskArgumentsError, TaskCancelError, UnknownTaskError
from qtasks.plugins.triggers import WorkerTrigger
from qtasks.schemas.envelope import dumps, sample
from qtasks.schemas.task import Task, new_record

if TYPE_CHECKING:
    from qtasks.registries.definition import TaskExecSchema
    from qtasks.schemas.delivery import Delivery

TRACEBACK_LIMIT = 16 * 1024
EARLY_CANCELS = 1024
"""Cancels kept for tasks not (yet) held: a claim's tasks reach `_accept` after its reply."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def format_error(exc: BaseException) -> str:
    """The traceback a record keeps, at most about `TRACEBACK_LIMIT` characters. A long one
    loses its oldest frames; a long message is cut after its start, so the last frame and the
    `Type: message` line that readers (OpenTelemetry's `error.type`) look for are kept."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) <= TRACEBACK_LIMIT:
        return text
    last = "".join(traceback.format_exception_only(type(exc), exc))
    if not text.endswith(last):  # an exception group prints its members after itself
        return "...\n" + text[-TRACEBACK_LIMIT:]
    frames = text[: len(text) - len(last)]
    if len(last) > TRACEBACK_LIMIT // 4:
        last = last[: TRACEBACK_LIMIT // 4] + "... (message cut)\n"
    room = TRACEBACK_LIMIT - len(last)
    return (frames if len(frames) <= room else "...\n" + frames[-room:]) + last


@dataclass
class Running:
    """A started task: its delivery and how to interrupt it."""

    delivery: Delivery
    handle: Any = None
    cancelled: str | None = field(default=None)
    # asyncio: the body is being awaited, and whether a cancel was sent into it.
    executing: bool = False
    cancel_sent: bool = False


class BaseWorker(Component):
    component: ClassVar[str] = "worker"
    task_executor: type[Any]
    frees_slot_before_final_write: ClassVar[bool] = False
    """Start the next task when a task's body returns, before its final write is
    acknowledged (see `_executed`). A task that lapsed before keeps its slot to the end: a
    crash during its write must not count against a suspect started after it."""

    def __init__(
        self,
        name: str = "QueueTasks",
        broker: Any = None,
        queues: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.broker = broker
        self.app: Any = None
        self.tasks: dict[str, TaskExecSchema] = {}
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:8]}"
        self._queues = queues
        self.task_middlewares_before: list[Any] = []
        self.task_middlewares_after: list[Any] = []
        self.running = False
        self.started_at: float | None = None
        self.processed = 0
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._buffer: list[tuple[int, int, Delivery]] = []
        self._leases: dict[str, str] = {}
        self._reserved = 0
        self._active: dict[str, Running] = {}
        # Tasks whose body is done and whose final write is under way (see `_executed`).
        self._writing: set[str] = set()
        self._suspect: str | None = None
        self._cancel_requests: dict[str, str | None] = {}
        # Cancels of tasks this worker did not hold when they came (see `on_cancel`).
        self._early_cancels: OrderedDict[str, str | None] = OrderedDict()
        self._forced = False
        self._registry_failing = False

    @property
    def queues(self) -> list[str]:
        return list(self._queues or self.config.queues)

    @queues.setter
    def queues(self, value: list[str]) -> None:
        self._queues = list(value)

    # -- capacity -------------------------------------------------------------------------------
    def capacity(self) -> int:
        """Tasks this worker may still claim: free slots plus prefetch, minus what it holds."""
        limit = self.config.max_tasks_process + self.config.prefetch
        held = len(self._leases) + self._reserved
        # Tasks whose final write is under way do not hold a slot, so the next claim overlaps
        # their write; at most `limit` of them, so held leases stay under twice the limit.
        return max(0, min(limit - held + len(self._writing), 2 * limit - held))

    def _claimable(self) -> int:
        """(Under the lock) what a claim loop should claim now: 0 until at least half the
        prefetch is free, unless the buffer ran dry with no claim under way (a slot may soon
        idle). A claim per freed slot cost a round trip and a wake-up per task; this claims
        several at a time while the buffer still feeds the slots."""
        free = self.capacity()
        if free >= max(1, self.config.prefetch // 2) or not (self._buffer or self._reserved):
            return free
        return 0

    def reserve(self) -> int:
        with self._lock:
            free = self._claimable()
            self._reserved += free
            return free

    def release(self, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self._reserved = max(0, self._reserved - count)
        self._signal_capacity()

    def in_flight(self) -> dict[str, str]:
        """`{task id: lease token}` of every claimed, unfinished task (for heartbeats)."""
        with self._lock:
            return dict(self._leases)

    # -- flavour-specific -----------------------------------------------------------------------
    @abstractmethod
    def _start_delivery(self, running: Running) -> None:
        """Begin running a task concurrently (an asyncio task, or a pool thread)."""

    @abstractmethod
    def _signal_capacity(self) -> None:
        """Wake `wait_capacity` (a slot was freed)."""

    @abstractmethod
    def _interrupt(self, running: Running) -> None:
        """Stop a running task because it was cancelled."""

    @abstractmethod
    def _execute(self, executor: Any, running: Running) -> Any:
        """Run the executor; raise `TaskCancelError` if the task was cancelled meanwhile."""

    # -- local queue ----------------------------------------------------------------------------
    def _accept(self, delivery: Delivery) -> None:
        """Take a claimed task into the priority buffer and start what fits."""
        env = delivery.envelope
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
            self._leases[env.id] = delivery.token
            if self._early_cancels and env.id in self._early_cancels:
                self._cancel_requests[env.id] = self._early_cancels.pop(env.id)
            heapq.heappush(self._buffer, (env.priority, next(self._seq), delivery))
        self._dispatch()

    def _dispatch(self) -> None:
        with self._lock:
            started = self._startable()
        for running in started:
            self._start_delivery(running)

    def _startable(self) -> list[Running]:
        """(Under the lock) take the buffered tasks that may start now, best priority first."""
        started: list[Running] = []
        held: list[tuple[int, int, Delivery]] = []
        while self.running and self._buffer and len(self._active) < self.config.max_tasks_process:
            item = heapq.heappop(self._buffer)
            delivery = item[2]
            # Suspects (tasks whose lease lapsed before) run one at a time: if one kills
            # the process again, it is the only suspect that was running, and the others
            # are not counted as crashed with it.
            if delivery.recoveries:
                if self._suspect is not None:
                    held.append(item)
                    continue
                self._suspect = delivery.envelope.id
            running = self._active[delivery.envelope.id] = Running(delivery)
            started.append(running)
        for item in held:
            heapq.heappush(self._buffer, item)
        return started

    def _done(self, delivery: Delivery) -> None:
        for running in self._finish_slot(delivery):
            self._start_delivery(running)

    def _executed(self, delivery: Delivery) -> None:
        """The task's body is done and its final write about to be sent: its execution slot
        goes to the next buffered task now, and a claim may refill the buffer, not one write
        round trip later. Its lease stays held (heartbeats) until `_done`."""
        with self._lock:
            self._active.pop(delivery.envelope.id, None)
            self._writing.add(delivery.envelope.id)
            started = self._startable()
            wake = self._claimable() > 0
        if wake:
            self._signal_capacity()
        for running in started:
            self._start_delivery(running)

    def _finish_slot(self, delivery: Delivery) -> list[Running]:
        """Forget a finished task and take what may start in its slot, in one lock round
        trip; wakes the claim loop only when it has something worth claiming."""
        task_id = delivery.envelope.id
        with self._lock:
            if self._suspect == task_id:
                self._suspect = None
            self._active.pop(task_id, None)
            self._writing.discard(task_id)
            self._leases.pop(task_id, None)
            self._cancel_requests.pop(task_id, None)
            self.processed += 1
            started = self._startable()
            wake = not self.running or self._claimable() > 0
        if wake:
            self._signal_capacity()
        return started

    def _take_buffer(self) -> list[Delivery]:
        with self._lock:
            items = [d for _, _, d in self._buffer]
            self._buffer.clear()
            for delivery in items:
                self._leases.pop(delivery.envelope.id, None)
        return items

    def on_cancel(self, uuid: str, reason: str | None) -> None:
        """Broker notification: a task this worker may hold was cancelled."""
        with self._lock:
            if uuid not in self._leases:
                # Maybe claimed by this worker and not handed over yet (the claim loop is
                # between the broker's reply and `_accept`): kept a while for `_accept`.
                self._early_cancels[uuid] = reason
                if len(self._early_cancels) > EARLY_CANCELS:
                    self._early_cancels.popitem(last=False)
                return
            self._cancel_requests[uuid] = reason
            running = self._active.get(uuid)
            if running is not None:
                running.cancelled = reason or "cancelled"
        if running is not None:
            self._interrupt(running)

    def force_stop(self) -> None:
        """A second signal: stop waiting for running tasks; they are handed back."""
        self._forced = True
        self._on_force()

    def _on_force(self) -> None:
        return None

    def on_leases_lost(self, lost: list[str]) -> None:
        for task_id in lost:
            self.log.warning("lease lost for task %s: another worker owns it now", task_id)

    # -- one task -------------------------------------------------------------------------------
    def _record(self, env: Any, **changes: Any) -> Task:
        record = new_record(env)
        # A fresh object nobody else holds: set the fields in place (one Task, not two).
        record._app = self.app
        record.worker = self.worker_id
        for name, value in changes.items():
            setattr(record, name, value)
        return record

    def _process_flow(self, running: Running) -> Flow[None]:
        delivery = running.delivery
        env = delivery.envelope
        task_func = self.tasks.get(env.task)
        if task_func is None or env.id in self._cancel_requests:
            yield from self._reject_flow(running, task_func)
            return
        plugins = self.plugins
        # Triggers nobody listens to are skipped before their arguments are built (hot path).
        if plugins.wants("worker_run_task_before"):
            out = yield from plugins.worker(
                "worker_run_task_before", worker=self, task_func=task_func, task_broker=env
            )
            task_func, env = out["task_func"], out["task_broker"]
        started = _now()
        model = self._record(env, status=STATUS_PROCESS, started_at=started, updated_at=started)
        if plugins.wants("worker_execute_before"):
            model = (
                yield from plugins.worker(
                    "worker_execute_before",
                    worker=self,
                    task_broker=env,
                    task_func=task_func,
                    model=model,
                )
            )["model"]
        if delivery.recoveries:
            try:
                yield from self.broker._mark_started_flow(delivery)
            except Exception as exc:  # noqa: BLE001 - the lapse cap still bounds the task
                self.log.warning("start mark of task %s failed: %r", env.id, exc)
        # The `process` mark (`storage.add_process`), inline in this driver; a storage that
        # writes behind sends it with the next batch of writes, and it is settled after the
        # final write (which it always precedes).
        storage = self.broker.storage
        mark = yield from storage._add_process_begin(model, env.priority)
        if self.events is not None and self.events.wants("task_running"):
            yield from self.events.flow(
                "task_running", worker=self, task_func=task_func, task_broker=env
            )
        executor_cls = task_func.executor or self.task_executor
        executor = executor_cls(
            task_func, env, log=self.log, plugins=self.plugins, worker=self, app=self.app
        )
        error: BaseException | None = None
        try:
            task_func.check_arguments(tuple(env.args), env.kwargs)
            result = yield partial(self._execute, executor, running)
            finished = _now()
            model = model.evolve(
                status=STATUS_SUCCESS,
                returning=result,
                _returning_json=executor.result_json,
                finished_at=finished,
                updated_at=finished,
            )
        except TaskCancelError as exc:
            finished = _now()
            model = model.evolve(
                status=STATUS_CANCEL,
                cancel_reason=str(exc),
                finished_at=finished,
                updated_at=finished,
            )
        except Exception as exc:  # noqa: BLE001 - any task error becomes its record
            error = exc
            finished = _now()
            model = model.evolve(
                status=STATUS_ERROR,
                traceback=format_error(exc),
                finished_at=finished,
                updated_at=finished,
            )
            left = env.retry if env.retry is not None else task_func.retry
            if left and not isinstance(exc, TaskArgumentsError) and task_func.retries_match(exc):
                model = (
                    yield from self.plugins.worker(
                        "worker_task_error_retry",
                        worker=self,
                        broker=self.broker,
                        task_func=task_func,
                        task_broker=env,
                        trace=model.traceback,
                        exception=exc,
                        model=model,
                    )
                )["model"]
        if self.frees_slot_before_final_write and not delivery.recoveries:
            self._executed(delivery)
        yield from self._finish_flow(running, task_func, model, error)
        yield from storage._update_end(mark)

    def _finish_flow(
        self, running: Running, task_func: Any, model: Task, error: BaseException | None
    ) -> Flow[None]:
        env = running.delivery.envelope
        plugins = self.plugins
        if plugins.wants("worker_remove_finished_task"):
            out = yield from plugins.worker(
                "worker_remove_finished_task",
                worker=self,
                broker=self.broker,
                task_func=task_func,
                task_broker=env,
                model=model,
            )
            model = out["model"]
        written = yield from self.broker._finish_flow(running.delivery, model)
        if not written:
            self.log.warning("lease lost for task %s: its result was discarded", env.id)
            return
        status = model.status
        kwargs: dict[str, Any] = {"model": model}
        trigger: WorkerTrigger
        if status == "success":
            name, trigger = "task_success", "worker_task_success"
        elif status == "cancel":
            name, trigger = "task_cancel", "worker_task_cancel"
        else:
            name, trigger = "task_error", "worker_task_error"
            kwargs["exception"] = error
        if plugins.wants(trigger):
            yield from plugins.worker(
                trigger, worker=self, task_func=task_func, task_broker=env, **kwargs
            )
        if self.events is not None and self.events.wants(name):
            yield from self.events.flow(
                name, worker=self, task_func=task_func, task_broker=env, model=model
            )
        if plugins.wants("worker_execute_after"):
            yield from plugins.worker(
                "worker_execute_after",
                worker=self,
                task_func=task_func,
                task_broker=env,
                model=model,
            )
        if self.events is not None and self.events.wants("task_stopping"):
            yield from self.events.flow(
                "task_stopping", worker=self, task_func=task_func, task_broker=env, model=model
            )

    def _reject_flow(self, running: Running, task_func: Any) -> Flow[None]:
        """A task that must not run: cancelled before it started, or a name not registered
        (which never chooses code: it is dead-lettered)."""
        env = running.delivery.envelope
        now = _now()
        if task_func is not None:
            reason = self._cancel_requests.get(env.id) or "cancelled"
            model = self._record(
                env, status="cancel", cancel_reason=reason, finished_at=now, updated_at=now
            )
            yield from self._finish_flow(running, task_func, model, None)
            return
        error = UnknownTaskError(f"task {env.task!r} is not registered in this worker")
        model = self._record(
            env,
            status="error",
            finished_at=now,
            updated_at=now,
            traceback=f"{type(error).__name__}: {error}",
        )
        self.log.error("dead-lettering task %s: unknown task name %r", env.id, env.task[:200])
        yield from self.broker._dead_letter_flow(
            running.delivery, "unknown_task", sample(dumps(env.to_dict())), model
        )

    # -- lifecycle helpers ---------------------------------------------------------------------
    def _start_flow(self) -> Flow[None]:
        self.running = True
        self._forced = False  # a forced stop of the run before
        self.started_at = time.time()
        if self.app is not None:
            self.tasks = self.app.tasks
        if self.on_cancel not in self.broker.cancel_listeners:
            self.broker.cancel_listeners.append(self.on_cancel)
        yield from self._register_flow()
        yield from self.plugins.worker("worker_start", worker=self)
        if self.events is not None and self.events.wants("worker_running"):
            yield from self.events.flow("worker_running", worker=self, number=0)

    def _stopped_flow(self) -> Flow[None]:
        if self.on_cancel in self.broker.cancel_listeners:
            self.broker.cancel_listeners.remove(self.on_cancel)
        yield from self._register_flow(leaving=True)
        yield from self.plugins.worker("worker_stop", worker=self)
        if self.events is not None and self.events.wants("worker_stopping"):
            yield from self.events.flow("worker_stopping", worker=self, number=0)

    def _heartbeat_flow(self) -> Flow[None]:
        leases = self.in_flight()
        if leases:
            lost = yield partial(self.broker.heartbeat, self.worker_id, leases)
            if lost:
                self.on_leases_lost(list(lost))
        yield from self._register_flow()

    def info(self) -> dict[str, Any]:
        """What the live-worker registry shows (stats, CLI, web view)."""
        return {
            "id": self.worker_id,
            "app": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "flavour": "async" if self.is_async else "sync",
            "started": self.started_at,
            "heartbeat": time.time(),
            "in_flight": len(self._leases),
            "running": len(self._active),
            "processed": self.processed,
            "queues": self.queues,
            "concurrency": self.config.max_tasks_process,
        }

    def _register_flow(self, leaving: bool = False) -> Flow[None]:
        """Keep this worker in the GlobalConfig's registry of live workers (with a TTL, so a
        killed worker drops out by itself)."""
        registry = getattr(self.broker.storage, "global_config", None)
        if registry is None:
            return
        try:
            if leaving:
                yield partial(registry._delete, WORKERS_NAME, self.worker_id)
            else:
                ttl = max(self.config.lease_timeout, 3 * self.config.heartbeat_interval)
                yield partial(registry._set, WORKERS_NAME, self.worker_id, self.info(), ttl, False)
        except Exception as exc:  # noqa: BLE001 - the registry is advisory; tasks go on
            # Once per outage, not on every heartbeat: the broker already logs the outage,
            # and a beat every 0.25 s would bury it.
            if not self._registry_failing:
                self.log.warning(
                    "worker registry update failed: %s; retrying on every heartbeat",
                    type(exc).__name__,
                )
            self._registry_failing = True
            return
        if self._registry_failing:
            self._registry_failing = False
            self.log.info("worker registry updated again")

    def add(self, delivery: Delivery) -> Any:
        """The broker hands over a claimed task (fires `worker_add`)."""
        raise NotImplementedError

    def _add_flow(self, delivery: Delivery) -> Flow[None]:
        if self.plugins.wants("worker_add"):
            env = delivery.envelope
            out = yield from self.plugins.worker(
                "worker_add",
                worker=self,
                task_name=env.task,
                uuid=env.id,
                priority=env.priority,
                args=env.args,
                kw=env.kwargs,
                created_at=env.created_at,
            )
            env.task, env.priority = out["task_name"], out["priority"]
            env.args, env.kwargs = out["args"], out["kw"]
        self._accept(delivery)
