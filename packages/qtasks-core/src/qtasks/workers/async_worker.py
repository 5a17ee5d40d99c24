"""`AsyncWorker`: coroutines on the event loop, sync functions in a bounded thread pool."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from typing import Any, ClassVar

from qtasks._drive import run_async
from qtasks._periodic import AsyncPeriodic
from qtasks._pool import DaemonThreadPool
from qtasks.exc import TaskCancelError, TaskExitError
from qtasks.executors.base import AsyncTaskExecutor
from qtasks.schemas.delivery import Delivery
from qtasks.workers.base import BaseWorker, Running

ABANDONED_BODIES = 64


class AsyncWorker(BaseWorker):
    is_async: ClassVar[bool] = True
    task_executor: type[Any] = AsyncTaskExecutor
    # The write runs in its own asyncio task, which shutdown waits for like any other.
    frees_slot_before_final_write = True

    def __init__(self, name: str = "QueueTasks", broker: Any = None, **kwargs: Any) -> None:
        super().__init__(name=name, broker=broker, **kwargs)
        self.thread_pool: DaemonThreadPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._capacity_event: asyncio.Event | None = None
        self._listeners: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._periodic: list[AsyncPeriodic] = []
        self._force_event: asyncio.Event | None = None
        self._context = contextvars.Context()  # the context at `start`, which tasks copy

    # -- flavour hooks --------------------------------------------------------------------------
    def _start_delivery(self, running: Running) -> None:
        # Every task starts from a copy of the worker's own context, not of the task that
        # freed its slot (`_executed` and `_done` run inside that task): context variables a
        # task body or a plugin set (Sentry's scopes, a tracer's current span) must not leak
        # into the next task.
        task = self._context.run(asyncio.ensure_future, self._run(running))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _signal_capacity(self) -> None:
        if self._capacity_event is None or self._loop is None:
            return
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is self._loop:
            self._capacity_event.set()
        else:
            self._loop.call_soon_threadsafe(self._capacity_event.set)

    def _on_force(self) -> None:
        if self._force_event is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._force_event.set)

    def _interrupt(self, running: Running) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_body, running)

    @staticmethod
    def _cancel_body(running: Running) -> None:
        # On the loop, so `executing` cannot change under it: a task between its body and its
        # final write is past cancelling.
        if running.executing and not running.cancel_sent and running.handle is not None:
            running.cancel_sent = True
            running.handle.cancel()

    async def _execute(self, executor: Any, running: Running) -> Any:
        # The body runs in the task's own asyncio task (a task per execution, not two); a
        # cancel is sent into that task only while the body is awaited (`_cancel_body`).
        running.handle = asyncio.current_task()
        if running.cancelled is not None:
            raise TaskCancelError(running.cancelled)
        running.executing = True
        try:
            result = await executor.execute()
        except asyncio.CancelledError as exc:
            if self._settle_cancel(running):
                raise TaskCancelError(running.cancelled or "cancelled") from None
            cancelling = getattr(asyncio.current_task(), "cancelling", None)
            if cancelling is None or cancelling():
                # Shutdown past the grace (`_run` hands the task back), or Python 3.10, which
                # cannot tell a cancel of this task from one the body ran into.
                raise
            # Nobody cancelled this task: an inner task the body awaited was cancelled. Handed
            # back, it would be claimed and run again at once, forever.
            raise TaskExitError.of(executor.task_func.name, exc) from exc
        finally:
            running.executing = False
        self._settle_cancel(running)  # a cancel the body caught and ignored
        return result

    def _settle_cancel(self, running: Running) -> bool:
        """Whether the cancel that ended the body was ours (not shutdown's); takes its count
        off the asyncio task, which runs on to write the record."""
        if not running.cancel_sent:
            return False
        running.cancel_sent = False
        uncancel = getattr(running.handle, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        return not self._current_cancelling()

    @staticmethod
    def _current_cancelling() -> bool:
        task = asyncio.current_task()
        return bool(task is not None and getattr(task, "cancelling", lambda: 0)())

    async def _run(self, running: Running) -> None:
        try:
            await run_async(self._process_flow(running))
        except asyncio.CancelledError:
            # Shutdown past the grace: hand the task back for another worker.
            with contextlib.suppress(Exception):
                await self.broker.requeue(running.delivery)
        except Exception:
            self.log.exception(
                "worker failed on task %s; its lease will lapse", running.delivery.envelope.id
            )
        finally:
            self._done(running.delivery)

    # -- the loop's API for the broker ------------------------------------------------------
    async def wait_capacity(self) -> int:
        assert self._capacity_event is not None
        while self.running:
            free = self.reserve()
            if free:
                return free
            self._capacity_event.clear()
            await self._capacity_event.wait()
        return 0

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def add(self, delivery: Delivery) -> None:
        await run_async(self._add_flow(delivery))

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, num_workers: int = 1) -> None:
        """Start consuming in the running loop; returns once the claim loops run."""
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        self._capacity_event = asyncio.Event()
        self._force_event = asyncio.Event()
        # The slots bound the sync bodies that run for a task; the threads beyond them are for
        # bodies that timed out or were cancelled and run on (a thread cannot be stopped), so
        # that they do not hold up, or time out, the tasks after them.
        self.thread_pool = DaemonThreadPool(
            self.config.max_tasks_process + ABANDONED_BODIES,
            thread_name_prefix=f"qtasks-{self.name}",
        )
        await run_async(self._start_flow())
        for number in range(max(1, num_workers)):
            task = asyncio.ensure_future(self._listen(number))
            self._listeners.append(task)
        self._periodic = [
            AsyncPeriodic(
                "heartbeat",
                lambda: self.config.heartbeat_interval,
                lambda: run_async(self._heartbeat_flow()),
            ),
            AsyncPeriodic("reaper", lambda: self.config.reaper_interval, self.broker.reap),
        ]
        for periodic in self._periodic:
            periodic.start()

    async def _listen(self, number: int) -> None:
        try:
            await self.broker.listen(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("claim loop %d stopped", number)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: stop claiming, hand back buffered tasks, let running ones finish within
        `grace` (default `config.shutdown_grace`), then interrupt and hand back the rest."""
        if not self.running:
            return
        self.running = False
        grace = self.config.shutdown_grace if grace is None else grace
        self.broker.interrupt()
        if self._capacity_event is not None:
            self._capacity_event.set()
        for listener in self._listeners:
            listener.cancel()
        await asyncio.gather(*self._listeners, return_exceptions=True)
        self._listeners.clear()
        for delivery in self._take_buffer():
            await self.broker.requeue(delivery)
        if self._tasks:
            assert self._force_event is not None
            all_done = asyncio.ensure_future(asyncio.wait(set(self._tasks)))
            forced = asyncio.ensure_future(self._force_event.wait())
            await asyncio.wait(
                {all_done, forced}, timeout=grace, return_when=asyncio.FIRST_COMPLETED
            )
            all_done.cancel()
            forced.cancel()
            pending = {t for t in self._tasks if not t.done()}
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for periodic in self._periodic:
            await periodic.stop()
        await run_async(self._stopped_flow())
        if self.thread_pool is not None:
            self.thread_pool.shutdown(wait=False, cancel_futures=True)
