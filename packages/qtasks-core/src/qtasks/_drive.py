"""One flow, two drivers: how sync and async components share their logic.

A *flow* is a generator that yields zero-argument callables ("steps") and receives each step's
result back. The flow holds the logic (which trigger fires, which record is written, what happens
on error); the driver only performs the steps. The sync driver calls them; the async driver calls
them and awaits whatever is awaitable. So `SyncBroker.add` and `AsyncBroker.add` are the same flow
run by different drivers, and a sync component can never silently drop a coroutine.

A sync step may return a `Pending` (a batched write's reply that is not in yet): `run_sync` waits
for it; `run_parking`, the sync worker's driver, parks the flow on it instead, so the thread is
free until the reply is in and the flow is resumed (by any thread) with `resume_parked`.
"""

from __future__ import annotations

import inspect
from asyncio import Future, Task
from collections.abc import Callable, Generator
from functools import partial
from types import CoroutineType
from typing import Any, TypeVar

T = TypeVar("T")
Step = Callable[[], Any]
Flow = Generator[Step, Any, T]


def is_awaitable(value: Any) -> bool:
    """`inspect.isawaitable`, with the common answers first: a step returns a coroutine or a
    plain value (None, a reply) far more often than anything else, and the general test goes
    through the `Awaitable` ABC, a few hundred ns on every step of every task. Futures (the
    write-behind batcher's replies) and tasks are awaitable too."""
    kind = type(value)
    if kind is CoroutineType or kind is Future or kind is Task:
        return True
    if value is None or kind in (list, dict, int, str, bytes, bool, tuple):
        return False
    return inspect.isawaitable(value)


class Pending:
    """A reply a sync step hands back before it is in (the thread batcher's write replies):
    `run_sync` waits for it, `run_parking` parks the flow on it and frees the thread."""

    __slots__ = ()
    done: bool
    ok: bool
    """(Settled) whether it holds a value rather than an error."""

    def wait(self) -> Any:
        """Block until settled; the value, or raise the error."""
        raise NotImplementedError

    def result(self) -> Any:
        """(Settled) the value, or raise the error."""
        raise NotImplementedError

    def on_settle(self, callback: Callable[[], None]) -> bool:
        """Call `callback` once settled (on the settling thread); False if settled already, in
        which case it is not called."""
        raise NotImplementedError


class AsyncInSyncContextError(TypeError):
    """A step of a sync flow returned an awaitable (an async handler on a sync component)."""


def run_sync(flow: Flow[T]) -> T:
    """Drive `flow` to completion, calling each step in the current thread."""
    return _drive_sync(flow, None)[1]  # type: ignore[return-value]


def run_parking(
    flow: Flow[T],
    park: Callable[[Pending], None],
    value: Any = None,
    error: BaseException | None = None,
) -> tuple[bool, T | None]:
    """`run_sync`, except that a step's unsettled `Pending` parks the flow: `park(pending)` is
    called once it settles (on the settling thread), and this returns `(False, None)` at once,
    so the thread can run other work. Resume with `resume_parked`. `(True, value)` once the
    flow has ended."""
    return _drive_sync(flow, park, value, error)


def _drive_sync(
    flow: Flow[T],
    park: Callable[[Pending], None] | None,
    value: Any = None,
    error: BaseException | None = None,
) -> tuple[bool, T | None]:
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return True, stop.value
        error = None
        try:
            value = step()
            if isinstance(value, Pending):
                if park is None:
                    value = value.wait()
                elif not value.done and value.on_settle(partial(park, value)):
                    return False, None
                else:
                    value = value.result()
            elif is_awaitable(value):
                close = getattr(value, "close", None)
                if close is not None:
                    close()
                raise AsyncInSyncContextError(
                    f"{getattr(step, '__qualname__', step)!s} returned an awaitable in a sync "
                    "component; use the asyncio app or a sync handler"
                )
        except BaseException as exc:  # noqa: BLE001 - handed back to the flow, which decides
            error = exc
            value = None


def resume_parked(
    flow: Flow[T], park: Callable[[Pending], None], pending: Pending
) -> tuple[bool, T | None]:
    """Drive a flow parked on `pending` (now settled) on from where it stopped."""
    try:
        value = pending.result()
    except BaseException as exc:  # noqa: BLE001 - handed to the flow, which decides
        return run_parking(flow, park, None, exc)
    return run_parking(flow, park, value)


async def run_async(flow: Flow[T]) -> T:
    """Drive `flow` to completion, awaiting the steps that return awaitables."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            value = step()
            if is_awaitable(value):
                value = await value
        except BaseException as exc:  # noqa: BLE001 - handed back to the flow, which decides
            error = exc
            value = None


def drive(component: Any, flow: Flow[T]) -> Any:
    """Run `flow` the way `component` runs: the value (sync) or a coroutine (async)."""
    if getattr(component, "is_async", False):
        return run_async(flow)
    return run_sync(flow)
