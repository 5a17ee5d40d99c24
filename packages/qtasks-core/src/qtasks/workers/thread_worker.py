"""`SyncThreadWorker`: a bounded pool of threads (never a thread per task)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from functools import partial
from typing import Any, ClassVar

from qtasks._drive import Flow, Pending, resume_parked, run_parking, run_sync
from qtasks._periodic import ThreadPeriodic
from qtasks._pool import DaemonThreadPool
from qtasks.exc import TaskCancelError, TaskExitError
from qtasks.executors.base import SyncTaskExecutor
from qtasks.schemas.delivery import Delivery
from qtasks.workers.base import BaseWorker, Running


class _TaskFlow:
    """A task's flow between its steps: its own context, so a flow parked on its final write
    and resumed by another pool thread sees the context variables it set (plugins' scopes)."""

    __slots__ = ("context", "flow", "inside", "running", "settled")

    def __init__(self, running: Running, flow: Flow[None], context: contextvars.Context) -> None:
        self.running = running
        self.flow = flow
        self.context = context
        self.inside = False
        """A thread is driving the flow (its context is entered there)."""
        self.settled: Pending | None = None
        """(Under the worker's lock) the reply that came in before the parking thread left the
        flow's context: that thread resumes the flow itself (a context is entered by one
        thread at a time)."""


Work = Running | tuple[_TaskFlow, Pending]
"""What a pool thread runs next: a task to start, or a parked flow whose reply is in."""


class SyncThreadWorker(BaseWorker):
    is_async: ClassVar[bool] = False
    task_executor: type[Any] = SyncTaskExecutor
    # A pool thread does not wait for a task's final write: the flow parks on the write's reply
    # and the thread runs the next task; the thread that brings the reply in (the round trip's
    # sender) queues the flow to be finished by whichever pool thread comes next.
    frees_slot_before_final_write = True

    def __init__(self, name: str = "QueueTasks", broker: Any = None, **kwargs: Any) -> None:
        super().__init__(name=name, broker=broker, **kwargs)
        self._capacity = threading.Condition(self._lock)
        self._pool: DaemonThreadPool | None = None
        self._listeners: list[threading.Thread] = []
        self._periodic: list[ThreadPeriodic] = []
        self._idle = threading.Condition()
        self._context = contextvars.Context()
        self._ready: deque[tuple[_TaskFlow, Pending]] = deque()
        """(Under the lock) parked flows whose reply is in, for the next pool thread."""
        self._looping = 0
        """(Under the lock) pool threads in `_run`. Nothing here decides by it (`_drainer` sees
        to `_ready`); it is what tests and debugging read to know whether a pool thread runs."""
        self._drainer = False
        """(Under the lock) a pool thread was sent to finish `_ready` and has not started."""

    # -- flavour hooks --------------------------------------------------------------------------
    def _start_delivery(self, running: Running) -> None:
        self._submit(running)

    def _signal_capacity(self) -> None:
        with self._capacity:
            self._capacity.notify_all()
        if not self.running:  # only `stop` waits for the slots to empty
            with self._idle:
                self._idle.notify_all()

    def _on_force(self) -> None:
        with self._idle:
            self._idle.notify_all()

    def _interrupt(self, running: Running) -> None:
        # Async code on a worker thread's loop can be cancelled; a plain function cannot be
        # stopped: it is marked and its result discarded.
        if callable(running.handle):
            running.handle()

    def _execute(self, executor: Any, running: Running) -> Any:
        if running.cancelled is not None:
            raise TaskCancelError(running.cancelled)
        executor.on_cancellable = partial(setattr, running, "handle")
        try:
            result = executor.execute()
        except Exception:
            raise
        except BaseException as exc:
            # On a pool thread no signal raises these: the body did, so they end the task as
            # an error (unless it is the cancel this worker sent into an async body).
            if isinstance(exc, asyncio.CancelledError) and running.cancelled is not None:
                raise TaskCancelError(running.cancelled) from None
            raise TaskExitError.of(executor.task_func.name, exc) from exc
        if running.cancelled is not None:
            raise TaskCancelError(running.cancelled)
        return result

    def _executed(self, delivery: Delivery) -> None:
        # The execution slot is free, and the next task starts on this thread once the final
        # write is sent or parked (`_next`): no hand-off to another pool thread. The task's
        # lease still counts toward the claim limit until its write is done (`_finish_slot`),
        # so a threaded worker never holds more than its slots plus its prefetch.
        with self._lock:
            self._active.pop(delivery.envelope.id, None)

    def _run(self, work: Work | None) -> None:
        with self._lock:
            self._looping += 1
        started: list[Running] = []
        try:
            if work is None:  # sent to finish parked flows (`_park`): take the first
                with self._lock:
                    self._drainer = False
                work = self._next(started)
            while work is not None:
                self._advance(work, started)
                work = self._next(started)
        except BaseException:
            # This thread may have been the one sent to finish `_ready`: send another.
            with self._lock:
                self._looping -= 1
                orphaned = bool(self._ready) and not self._drainer
                self._drainer = self._drainer or orphaned
            if orphaned:
                self._submit(None)
            raise

    def _advance(self, work: Work, started: list[Running]) -> None:
        """Drive one task's flow until it ends (its slot is then freed into `started`) or parks
        on a write's reply (`_park` queues it again once the reply is in)."""
        if isinstance(work, Running):
            task = _TaskFlow(work, self._process_flow(work), self._context.copy())
            go: Any = partial(run_parking, task.flow, partial(self._park, task))
        else:
            task, pending = work
            go = partial(resume_parked, task.flow, partial(self._park, task), pending)
        delivery = task.running.delivery
        while True:
            task.inside = True
            try:
                finished, _ = task.context.run(go)
            except Exception:
                self.log.exception(
                    "worker failed on task %s; its lease will lapse", delivery.envelope.id
                )
                finished = True
            except BaseException:
                task.inside = False
                self._done(delivery)
                raise
            if finished:
                task.inside = False
                started.extend(self._finish_slot(delivery))
                return
            with self._lock:
                task.inside = False
                settled, task.settled = task.settled, None
            if settled is None:
                return
            go = partial(resume_parked, task.flow, partial(self._park, task), settled)

    def _park(self, task: _TaskFlow, pending: Pending) -> None:
        """(On the thread that settled `pending`) queue the parked flow for a pool thread. A
        failed write gets a pool thread of its own: its flow may wait out a Redis outage
        (`persist`'s backoff), and must not hold up the flows queued behind it."""
        with self._lock:
            if task.inside:
                task.settled = pending
                return
            if not pending.ok:
                alone = True
            else:
                alone = False
                self._ready.append((task, pending))
                # A pool thread that runs on may be in a long task body: a thread of its own
                # finishes the queue (one at a time), so no flow waits behind a body.
                if self._drainer:
                    return
                self._drainer = True
        self._submit((task, pending) if alone else None)

    def _next(self, started: list[Running]) -> Work | None:
        """This thread's next work: a task its slot freed, a parked flow whose reply is in, a
        buffered task that fits; None (and the thread leaves `_run`) when there is none."""
        with self._lock:
            if not started:
                if self._ready:
                    return self._ready.popleft()
                started.extend(self._startable())
                if not started:
                    self._looping -= 1
                    return None
        work = started.pop(0)
        for other in started:
            self._submit(other)
        started.clear()
        return work

    def _submit(self, work: Work | None) -> None:
        assert self._pool is not None
        try:
            self._pool.submit(self._run, work)
        except RuntimeError:  # the pool was shut down: the leases lapse and are reclaimed
            if work is None:
                with self._lock:
                    self._drainer = False
            self.log.debug("worker stopped: parked task left to its lease")

    # -- the loop's API for the broker ------------------------------------------------------
    def wait_capacity(self) -> int:
        with self._capacity:
            while self.running:
                free = self._claimable()
                if free:
                    self._reserved += free
                    return free
                self._capacity.wait()
        return 0

    def pause(self, seconds: float) -> None:
        with self._capacity:
            self._capacity.wait_for(lambda: not self.running, seconds)

    def add(self, delivery: Delivery) -> None:
        run_sync(self._add_flow(delivery))

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, num_workers: int = 1) -> None:
        """Start claim loops and the pool in background threads; returns once they run."""
        # One thread more than the slots: task bodies never run on more than the slots
        # (`_startable`), so with every slot in a long body a flow handed back (`_park`) still
        # gets a thread to finish it, and its lease and post-write triggers do not wait.
        self._pool = DaemonThreadPool(
            self.config.max_tasks_process + 1, thread_name_prefix=f"qtasks-{self.name}"
        )
        self._context = contextvars.copy_context()  # the context at `start`, which tasks copy
        run_sync(self._start_flow())
        for number in range(max(1, num_workers)):
            thread = threading.Thread(
                target=self._listen, args=(number,), daemon=True, name=f"qtasks-claim-{number}"
            )
            self._listeners.append(thread)
            thread.start()
        self._periodic = [
            ThreadPeriodic(
                "qtasks-heartbeat",
                lambda: self.config.heartbeat_interval,
                lambda: run_sync(self._heartbeat_flow()),
            ),
            ThreadPeriodic("qtasks-reaper", lambda: self.config.reaper_interval, self.broker.reap),
        ]
        for periodic in self._periodic:
            periodic.start()

    def _listen(self, number: int) -> None:
        try:
            self.broker.listen(self)
        except Exception:
            self.log.exception("claim loop %d stopped", number)

    def stop(self, grace: float | None = None) -> None:
        """Drain: stop claiming, hand back buffered tasks, let running ones finish within
        `grace`, then hand back the rest (their late results are refused by the lease check)."""
        if not self.running:
            return
        grace = self.config.shutdown_grace if grace is None else grace
        with self._capacity:
            self.running = False
            self._capacity.notify_all()
        self.broker.interrupt()
        for thread in self._listeners:
            thread.join(self.config.block_timeout + 1)
        self._listeners.clear()
        for delivery in self._take_buffer():
            self.broker.requeue(delivery)
        with self._idle:
            # Every lease left is a running task or one whose final write is under way.
            self._idle.wait_for(lambda: not self._leases or self._forced, grace)
        with self._lock:
            leftover = [r.delivery for r in self._active.values()]
        for delivery in leftover:
            self.broker.requeue(delivery)
        for periodic in self._periodic:
            periodic.stop()
        run_sync(self._stopped_flow())
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
