"""Reads of qtasks' asyncio connections under their socket timeout, without a timer per read.

redis-py's asyncio connection wraps every read in `asyncio.timeout(socket_timeout)`: a timeout
object, a timer handle pushed on the event loop's heap and cancelled after the reply, and an
event loop that then wakes with a timeout to compute. The producer's CPU per awaited enqueue
went from about 84 to 72 us with the timer below (70-75 us with no read timeout at all).

Here each connection keeps one `ReadDeadline`. A read sets the deadline and the reading task
(an attribute write); a timer runs only when none is pending, at the deadline it was set for,
and then either re-arms itself for the newer deadline (the connection kept reading in time), or
does nothing (no read in progress), or cancels the reading task, which the read turns into
redis-py's `TimeoutError` exactly as `asyncio.timeout` does (the task's cancel count decides
whether someone else cancelled it too, and then the cancellation wins). The errors and the
disconnects are redis-py's, and so is the hook its maintenance notifications use to relax a
running read's timeout (`reschedule`). Reads this does not cover go through redis-py's own
code: an explicit `timeout`, a push read (pub/sub), no socket timeout, and Python 3.10 (no
`Task.uncancel`).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from redis.exceptions import ConnectionError, ResponseError, TimeoutError

_UNCANCEL = hasattr(asyncio.Task, "uncancel")
# A timer fires up to one clock resolution early; a deadline this close counts as reached.
_EARLY = 0.001


class ReadDeadline:
    """The socket timeout of one connection's reads (see the module doc)."""

    __slots__ = ("deadline", "fired", "handle", "loop", "task", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task: asyncio.Task[Any] | None = None  # the task reading, while it reads
        self.deadline = 0.0
        self.handle: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when `handle` fires
        self.fired: asyncio.Task[Any] | None = None  # the task this cancelled, until it saw it

    def arm(self, task: asyncio.Task[Any], timeout: float) -> None:
        self.deadline = deadline = self.loop.time() + timeout
        self.task = task
        # A pending timer set for an earlier deadline re-arms itself when it fires.
        if self.handle is None or deadline < self.timer_at:
            self._set_timer(deadline)

    def reschedule(self, when: float | None) -> None:
        """Move the running read's deadline (loop time; None: none), as redis-py does on
        `asyncio.timeout` when a maintenance notification relaxes the socket timeout."""
        self.deadline = math.inf if when is None else when
        if (
            when is not None
            and self.task is not None
            and (self.handle is None or when < self.timer_at)
        ):
            self._set_timer(when)

    def _set_timer(self, when: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.timer_at = when
        self.handle = self.loop.call_at(when, self._check)

    def _check(self) -> None:
        self.handle = None
        task = self.task
        if task is None:
            return  # no read in progress: the next one sets a timer
        if self.deadline - self.loop.time() > _EARLY:
            if self.deadline != math.inf:
                self._set_timer(self.deadline)  # reads went on in time: the latest one's
            return
        self.task = None
        self.fired = task
        task.cancel()


class QuickReads:
    """Mixin over a redis-py asyncio Connection class: `read_response` as redis-py's, with the
    socket timeout kept by a `ReadDeadline` (see the module doc)."""

    _active_read_timeout: Any  # redis-py's: what relaxes the running read's timeout

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        socket_timeout = self.socket_timeout  # type: ignore[attr-defined]
        task = asyncio.current_task()
        if (
            timeout is not None
            or socket_timeout is None
            or push_request
            or task is None
            or not _UNCANCEL
        ):
            return await super().read_response(  # type: ignore[misc]
                disable_decoding,
                timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
        watch: ReadDeadline | None = getattr(self, "_qtasks_deadline", None)
        if watch is None or watch.loop is not task.get_loop():
            watch = self._qtasks_deadline = ReadDeadline(task.get_loop())
        cancelling = task.cancelling()  # type: ignore[attr-defined]
        watch.arm(task, socket_timeout)
        # Where redis-py's maintenance notifications (RESP3 pushes read with the reply) find
        # the read's timeout to relax it: `ReadDeadline.reschedule`, as on `asyncio.timeout`.
        self._active_read_timeout = watch
        try:
            if self.protocol in (3, "3"):  # type: ignore[attr-defined]
                response = await self._parser.read_response(  # type: ignore[attr-defined]
                    disable_decoding=disable_decoding, push_request=push_request
                )
            else:
                response = await self._parser.read_response(  # type: ignore[attr-defined]
                    disable_decoding=disable_decoding
                )
        except BaseException as exc:
            # Disarmed before anything else: the timer must not cancel the task once more
            # while it disconnects.
            watch.task = self._active_read_timeout = None
            timed_out, watch.fired = watch.fired is task, None
            if disconnect_on_error:
                await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            host = self._host_error()  # type: ignore[attr-defined]
            if timed_out and task.uncancel() <= cancelling:  # type: ignore[attr-defined]
                raise TimeoutError(f"Timeout reading from {host}") from None
            if isinstance(exc, OSError):
                raise ConnectionError(f"Error while reading from {host} : {exc.args}") from None
            raise  # as redis-py: a read cut short leaves the stream out of step, and is closed
        watch.task = self._active_read_timeout = None
        interval = self.health_check_interval  # type: ignore[attr-defined]
        if interval:
            self.next_health_check = watch.loop.time() + interval
        if isinstance(response, ResponseError):
            raise response from None
        return response
