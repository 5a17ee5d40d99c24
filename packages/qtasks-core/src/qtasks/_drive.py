"""One flow, two drivers: how sync and async components share their logic.

A *flow* is a generator that yields zero-argument callables ("steps") and receives each step's
result back. The flow holds the logic (which trigger fires, which record is written, what happens
on error); the driver only performs the steps. The sync driver calls them; the async driver calls
them and awaits whatever is awaitable. So `SyncBroker.add` and `AsyncBroker.add` are the same flow
run by different drivers, and a sync component can never silently drop a coroutine.
"""

from __future__ import annotations

import inspect
from asyncio import Future, Task
from collections.abc import Callable, Generator
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


class AsyncInSyncContextError(TypeError):
    """A step of a sync flow returned an awaitable (an async handler on a sync component)."""


def run_sync(flow: Flow[T]) -> T:
    """Drive `flow` to completion, calling each step in the current thread."""
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
