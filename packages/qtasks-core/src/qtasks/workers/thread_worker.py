"""`SyncThreadWorker`: a bounded pool of threads (never a thread per task)."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from typing import Any, ClassVar

from qtasks._drive import run_sync
from qtasks._periodic import ThreadPeriodic
from qtasks._pool import DaemonThreadPool
from qtasks.exc import TaskCancelError
from qtasks.executors.base import SyncTaskExecutor
from qtasks.schemas.delivery import Delivery
from qtasks.workers.base import BaseWorker, Running


class SyncThreadWorker(BaseWorker):
    is_async: ClassVar[bool] = False
    task_executor: type[Any] = SyncTaskExecutor

    def __init__(self, name: str = "QueueTasks", broker: Any = None, **kwargs: Any) -> None:
        super().__init__(name=name, broker=broker, **kwargs)
        self._capacity = threading.Condition(self._lock)
        self._pool: DaemonThreadPool | None = None
        self._listeners: list[threading.Thread] = []
        self._periodic: list[ThreadPeriodic] = []
        self._idle = threading.Condition()

    # -- flavour hooks --------------------------------------------------------------------------
    def _start_delivery(self, running: Running) -> None:
        assert self._pool is not None
        self._pool.submit(self._run, running)

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
        except asyncio.CancelledError:
            if running.cancelled is None:
                raise
            raise TaskCancelError(running.cancelled) from None
        if running.cancelled is not None:
            raise TaskCancelError(running.cancelled)
        return result

    def _run(self, running: Running) -> None:
        # The thread that frees a slot runs the next buffered task itself: no hand-off to
        # another pool thread (a queue put, a wake-up and a GIL switch per task).
        while True:
            try:
                run_sync(self._process_flow(running))
            except Exception:
                self.log.exception(
                    "worker failed on task %s; its lease will lapse", running.delivery.envelope.id
                )
            except BaseException:
                self._done(running.delivery)
                raise
            started = self._finish_slot(running.delivery)
            if not started:
                return
            running = started[0]
            for other in started[1:]:
                self._start_delivery(other)

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
        self._pool = DaemonThreadPool(
            self.config.max_tasks_process, thread_name_prefix=f"qtasks-{self.name}"
        )
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
            self._idle.wait_for(lambda: not self._active or self._forced, grace)
        with self._lock:
            leftover = [r.delivery for r in self._active.values()]
        for delivery in leftover:
            self.broker.requeue(delivery)
        for periodic in self._periodic:
            periodic.stop()
        run_sync(self._stopped_flow())
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
