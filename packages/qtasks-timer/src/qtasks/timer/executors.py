"""APScheduler executors that hand each due job's scheduled run times to the timer.

APScheduler's own executors call the job function without the time the run was scheduled for,
and the timer needs exactly that time: it names the tick that replicas claim. So the timer's jobs
run through these executors, which pass `(job id, run times)` to the timer and never call the
job function. The misfire grace check moves into the timer too (one policy for live ticks and
catch-up).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

from apscheduler.executors.base import BaseExecutor

RunTicks = Callable[[str, list[datetime]], Any]


def executor_only() -> None:
    """The function APScheduler records for a timer job; the timer's executors never call it."""
    raise RuntimeError("qtasks timer jobs run through the timer's executor only")


class AsyncTickExecutor(BaseExecutor):  # type: ignore[misc]  # apscheduler is untyped
    """Runs ticks as tasks on the timer's event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        run_ticks: Callable[[str, list[datetime]], Awaitable[None]],
    ) -> None:
        super().__init__()
        self._loop = loop
        self._run_ticks = run_ticks
        self.pending: set[asyncio.Task[None]] = set()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        task = self._loop.create_task(self._tick(job.id, list(run_times)))
        self.pending.add(task)
        task.add_done_callback(partial(self._done, job.id))

    async def _tick(self, job_id: str, run_times: list[datetime]) -> None:
        await self._run_ticks(job_id, run_times)

    def _done(self, job_id: str, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._run_job_error(job_id, error, error.__traceback__)
        else:
            self._run_job_success(job_id, [])


class ThreadTickExecutor(BaseExecutor):  # type: ignore[misc]  # apscheduler is untyped
    """Runs ticks in a small thread pool; `shutdown(wait=True)` waits for ticks in flight."""

    def __init__(
        self, run_ticks: Callable[[str, list[datetime]], None], max_workers: int = 4
    ) -> None:
        super().__init__()
        self._run_ticks = run_ticks
        self._max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._max_workers, thread_name_prefix="qtasks-timer"
        )

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        assert self._pool is not None, "executor not started"
        future = self._pool.submit(self._run_ticks, job.id, list(run_times))
        future.add_done_callback(partial(self._done, job.id))

    def _done(self, job_id: str, future: concurrent.futures.Future[None]) -> None:
        error = future.exception()
        if error is not None:
            self._run_job_error(job_id, error, error.__traceback__)
        else:
            self._run_job_success(job_id, [])
