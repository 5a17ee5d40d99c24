"""Run a function every `interval` seconds until stopped: a thread or an asyncio task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger("qtasks.periodic")


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

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval())
            try:
                await self._func()
            except Exception:
                log.exception("periodic %s failed; retrying next tick", self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
