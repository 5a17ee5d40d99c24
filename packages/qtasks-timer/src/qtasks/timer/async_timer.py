"""`AsyncTimer`: the timer on APScheduler's `AsyncIOScheduler`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from qtasks._drive import Flow, run_async, run_sync
from qtasks.timer.core import TimerCore
from qtasks.timer.executors import AsyncTickExecutor
from qtasks.timer.schedule import Schedule
from qtasks.timer.status import ScheduleStatus

T = TypeVar("T")
STOP_TIMEOUT = 10.0
"""Seconds `stop()` waits for enqueues in flight."""


class AsyncTimer(TimerCore):
    """Runs schedules on an asyncio loop, beside an app's worker or as its own process.

    `timer.run_forever()` blocks (it runs its own loop: the seed's module-level call); in a
    running loop use `await timer.start()` / `await timer.stop()`, `async with timer:` or
    `await timer.serve()`. Works with either app flavour: a sync app's calls run in threads.
    """

    is_async: ClassVar[bool] = True

    def __init__(self, app: Any, log: Any = None, config: Any = None) -> None:
        super().__init__(app, log=log, config=config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: AsyncTickExecutor | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_requested = False
        self._activations: set[concurrent.futures.Future[None]] = set()

    async def _drive(self, flow: Flow[T]) -> T:
        if getattr(self.app, "is_async", False):
            return await run_async(flow)
        # A sync app blocks on network I/O: keep its calls off the event loop.
        return await asyncio.to_thread(run_sync, flow)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Register the schedules, catch up missed ticks, and start firing (non-blocking)."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._executor = AsyncTickExecutor(self._loop, self._run_ticks)
        self._scheduler = AsyncIOScheduler(
            event_loop=self._loop, timezone=timezone.utc, executors={"default": self._executor}
        )
        await self._drive(self._start_flow())
        for schedule in list(self._schedules.values()):
            self._add_job(schedule, await self._drive(self._activate_flow(schedule)))
        self._scheduler.start()
        self._running = True

    async def stop(self) -> None:
        """Stop firing and wait (up to STOP_TIMEOUT s) for enqueues in flight."""
        if not self._running:
            return
        self._running = False
        self._scheduler.shutdown(wait=False)
        pending: list[asyncio.Future[Any]] = [*(self._executor.pending if self._executor else ())]
        pending += [asyncio.wrap_future(f) for f in self._activations]
        if pending:
            await asyncio.wait(pending, timeout=STOP_TIMEOUT)
        await self._drive(self._stop_flow())

    def run_forever(self) -> None:
        """Run until SIGINT, SIGTERM or `request_stop()` (blocking; starts its own loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.serve())
            return
        raise RuntimeError(
            "AsyncTimer.run_forever() blocks, so it cannot run inside a running "
            "event loop; use `await timer.serve()` or `async with timer:`"
        )

    async def serve(self) -> None:
        """`run_forever()` for callers already in a loop."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._loop.add_signal_handler(sig, self._stop_event.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        try:
            await self.start()
            await self._stop_event.wait()
        finally:
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            await self.stop()
            self._stop_event = None
            self._stop_requested = False

    def request_stop(self) -> None:
        """Make `run_forever()` / `serve()` return; safe from any thread."""
        self._stop_requested = True
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def schedules(self) -> list[ScheduleStatus]:
        """Each schedule with its next run time, last run and last task uuid."""
        return await self._drive(self._schedules_flow())

    async def __aenter__(self) -> AsyncTimer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- internals ------------------------------------------------------------------------------
    async def _run_ticks(self, schedule_id: str, run_times: list[datetime]) -> None:
        await self._drive(self._ticks_flow(schedule_id, run_times))

    def _activate_running(self, schedule: Schedule) -> None:
        assert self._loop is not None
        # add_task is sync and may be called from any thread: hand the work to the loop.
        future = asyncio.run_coroutine_threadsafe(self._activate(schedule), self._loop)
        self._activations.add(future)
        future.add_done_callback(self._activations.discard)

    async def _activate(self, schedule: Schedule) -> None:
        try:
            first = await self._drive(self._activate_flow(schedule))
            if self._running:
                self._add_job(schedule, first)
        except Exception:
            self.log.exception("schedule %s could not be registered", schedule.id)
