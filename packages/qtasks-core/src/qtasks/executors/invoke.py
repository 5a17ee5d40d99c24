"""How a task function is called, on the event loop or in threads, within its `max_time`.

Async worker: coroutines and async generators run on the loop; sync functions and generators run
in the worker's thread pool so they never block the loop. Sync worker: sync functions run in the
calling pool thread; coroutines run on a loop owned by that thread. A sync function with
`max_time` runs in a helper thread so that its timeout is recorded on time; Python cannot stop a
thread, so it runs on and its late result is discarded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from qtasks._pool import DaemonThreadPool
from qtasks.exc import TaskExitError, TaskTimeoutError

if TYPE_CHECKING:
    from qtasks.registries.definition import TaskExecSchema

# Threads are made only when none is idle; the bound is for bodies that overran their
# `max_time` and run on (they cannot be stopped), so that they hold up no task that is on time.
_timed_pool = DaemonThreadPool(256, thread_name_prefix="qtasks-timed")
_local = threading.local()


def _timeout_error(task: TaskExecSchema) -> TaskTimeoutError:
    return TaskTimeoutError(f"task {task.name!r} exceeded max_time={task.max_time}s")


def _collect_sync(gen: Iterator[Any], handler: Callable[[Any], Any] | None) -> list[Any]:
    return [handler(item) if handler else item for item in gen]


async def _collect_async(
    gen: AsyncIterator[Any] | Iterator[Any], handler: Callable[[Any], Any] | None
) -> list[Any]:
    out = []
    if isinstance(gen, AsyncIterator):
        async for item in gen:
            out.append(item)
    else:
        out = list(gen)
    if handler is None:
        return out
    handled = []
    for item in out:
        value = handler(item)
        handled.append(await value if inspect.isawaitable(value) else value)
    return handled


def _thread_loop() -> asyncio.AbstractEventLoop:
    """One event loop per worker thread, for async tasks on the sync worker."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def invoke_sync(
    task: TaskExecSchema,
    args: list[Any],
    kwargs: dict[str, Any],
    on_cancellable: Callable[[Callable[[], object]], None] | None = None,
) -> Any:
    """`on_cancellable(cancel)` receives a function that interrupts the call, when one can."""
    func = task.func
    if task.awaiting:

        async def run() -> Any:
            if task.generating:
                coro = _collect_async(func(*args, **kwargs), task.generate_handler)
            else:
                coro = func(*args, **kwargs)
            return await _within(coro, task)

        loop = _thread_loop()
        running = loop.create_task(run())
        if on_cancellable is not None:
            on_cancellable(lambda: loop.call_soon_threadsafe(running.cancel))
        return loop.run_until_complete(running)

    def call() -> Any:
        result = func(*args, **kwargs)
        if task.generating:
            return _collect_sync(result, task.generate_handler)
        return result

    if task.max_time is None:
        return call()
    future = _timed_pool.submit(contextvars.copy_context().run, call)
    try:
        return future.result(task.max_time)
    except concurrent.futures.TimeoutError:
        future.cancel()  # not started yet (every helper thread busy): it must not run later
        raise _timeout_error(task) from None


async def invoke_async(
    task: TaskExecSchema,
    args: list[Any],
    kwargs: dict[str, Any],
    pool: concurrent.futures.Executor | None,
) -> Any:
    func = task.func
    coro: Any
    if task.awaiting:
        if task.generating:
            coro = _collect_async(func(*args, **kwargs), task.generate_handler)
        else:
            coro = func(*args, **kwargs)
    else:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()

        def call() -> Any:
            try:
                result = func(*args, **kwargs)
                return list(result) if task.generating else result
            except Exception:
                raise
            except BaseException as exc:
                # Delivered to the loop, a SystemExit would stop the whole worker (see exc).
                raise TaskExitError.of(task.name, exc) from exc

        future = loop.run_in_executor(pool, context.run, call)
        coro = future
        if task.generating and task.generate_handler is not None:
            handler = task.generate_handler

            async def handled() -> list[Any]:
                return await _collect_async(iter(await future), handler)

            coro = handled()
    return await _within(coro, task)


async def _within(coro: Any, task: TaskExecSchema) -> Any:
    """`coro` within the task's `max_time`. Without one it is awaited in the calling task:
    Python 3.10 and 3.11's `wait_for` wraps even an unbounded await in a task of its own, one
    more task and loop turn per execution."""
    if task.max_time is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, task.max_time)
    except asyncio.TimeoutError:
        raise _timeout_error(task) from None
