"""`SyncTimer`: the timer on APScheduler's `BackgroundScheduler` (its own threads)."""

from __future__ import annotations

import signal
import threading
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler

from qtasks._drive import Flow, run_async, run_sync
from qtasks.timer.core import TimerCore
from qtasks.timer.executors import ThreadTickExecutor
from qtasks.timer.loop_thread import LoopThread
from qtasks.timer.schedule import Schedule
from qtasks.timer.status import ScheduleStatus

T = TypeVar("T")


class SyncTimer(TimerCore):
    """Runs schedules in background threads, beside an app's worker or as its own process.

    `with timer:` (or `start()`/`stop()`) runs it for a block; `run_forever()` blocks until
    SIGINT, SIGTERM or `request_stop()`. With an asyncio app its calls run on a private event
    loop thread; prefer `AsyncTimer` there, which shares the app's loop.
    """

    def __init__(self, app: Any, log: Any = None, config: Any = None) -> None:
        super().__init__(app, log=log, config=config)
        self._executor: ThreadTickExecutor | None = None
        self._loop_thread: LoopThread | None = None
        self._stop_event = threading.Event()
        self._lock = threading.RLock()

    def _drive(self, flow: Flow[T]) -> T:
        if getattr(self.app, "is_async", False):
            with self._lock:
                if self._loop_thread is None:
                    self._loop_thread = LoopThread()
            return self._loop_thread.run(run_async(flow))
        return run_sync(flow)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Register the schedules, catch up missed ticks, and start firing (non-blocking)."""
        with self._lock:
            if self._running:
                return
            self._executor = ThreadTickExecutor(self._run_ticks)
            self._scheduler = BackgroundScheduler(
                timezone=timezone.utc, daemon=True, executors={"default": self._executor}
            )
            self._drive(self._start_flow())
            for schedule in list(self._schedules.values()):
                self._add_job(schedule, self._drive(self._activate_flow(schedule)))
            self._scheduler.start()
            self._running = True

    def stop(self) -> None:
        """Stop firing; waits for enqueues in flight."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            # APScheduler's shutdown marks the scheduler stopped before taking its job-store
            # lock, so a pass over due jobs still in progress on its thread fails to drop a
            # finished one (JobLookupError kills that thread). Pause, let that pass end (it
            # holds the lock throughout), then shut down.
            self._scheduler.pause()
            with self._scheduler._jobstores_lock:
                pass
            self._scheduler.shutdown(wait=True)
            try:
                self._drive(self._stop_flow())
            finally:
                if self._loop_thread is not None:
                    self._loop_thread.close()
                    self._loop_thread = None

    def run_forever(self) -> None:
        """Run until SIGINT, SIGTERM or `request_stop()` (blocking)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda signum, frame: self.request_stop())
        try:
            self.start()
            self._stop_event.wait()
        finally:
            self.stop()
            self._stop_event.clear()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def request_stop(self) -> None:
        """Make `run_forever()` return; safe from any thread."""
        self._stop_event.set()

    def schedules(self) -> list[ScheduleStatus]:
        """Each schedule with its next run time, last run and last task uuid."""
        return self._drive(self._schedules_flow())

    def __enter__(self) -> SyncTimer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------------
    def _run_ticks(self, schedule_id: str, run_times: list[datetime]) -> None:
        self._drive(self._ticks_flow(schedule_id, run_times))

    def _activate_running(self, schedule: Schedule) -> None:
        self._add_job(schedule, self._drive(self._activate_flow(schedule)))
