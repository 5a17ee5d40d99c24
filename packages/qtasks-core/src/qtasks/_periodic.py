"""Run a function every `interval` seconds until stopped: a thread or an asyncio task."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger("qtasks.periodic")
STOP_POLL = 0.1
"""How often `AsyncPeriodic.stop` repeats a cancel that was lost (seconds)."""


class ThreadPeriodic:
    def __init__(
        self, name: str, interval: Callable[[], float], func: Callable[[], object]
    ) -> None:
        self._stop = threading.Event()
        self._interval = interval
        self._func = func
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self._func()
            except Exception:
                log.exception("periodic %s failed; retrying next tick", self._thread.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)


class AsyncPeriodic:
    def __init__(
        self, name: str, interval: Callable[[], float], func: Callable[[], Awaitable[object]]
    ) -> None:
        self._name = name
        self._interval = interval
        self._func = func
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._interval())
            if self._stopping:
                break
            try:
                await self._func()
            except Exception:
                log.exception("periodic %s failed; retrying next tick", self._name)

    async def stop(self) -> None:
        """Cancel the loop and wait for it. On Python 3.11 a cancel can be lost: redis-py's
        writes go through `asyncio.wait_for`, which returns the inner result when that finished
        in the same loop turn as the cancel, and a lost cancel hung a worker's stop for good
        (chaos B4 on redis-py 7.4). So the loop also checks a flag, and the cancel is repeated
        until the task ends."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_POLL)
        if not task.cancelled():
            task.exception()  # retrieved: `_run` logs its function's errors itself
