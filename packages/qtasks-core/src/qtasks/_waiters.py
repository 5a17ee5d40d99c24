"""Wake-ups that work across threads and event loops, for blocking claims and result waits.

A component registers a waiter under its store's lock and waits outside it; whoever changes the
store wakes the waiters. No polling: a producer's result wait returns as soon as the final record
is written, whichever thread or loop wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class ThreadWaiter:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)


class AsyncWaiter:
    __slots__ = ("_future", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] = self._loop.create_future()

    def wake(self) -> None:
        # A closed loop (RuntimeError) means nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout: float | None) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except asyncio.TimeoutError:
            return False
        return True


Waiter = ThreadWaiter | AsyncWaiter
