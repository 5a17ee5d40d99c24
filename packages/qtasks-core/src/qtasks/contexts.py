"""`self.ctx` inside an `echo=True` task: the running execution's context.

The task handle is shared by concurrent executions, so the context lives in a `ContextVar` set by
the executor for each one; `self.ctx` always answers for the execution that asks.

Its waiting methods follow the task function's flavour, not the app's: an async function awaits
them, a sync one gets the value. A sync function on the asyncio app runs on a pool thread, so
what the app does on its event loop (`get`, `add_task`) is run there and waited for
(`run_on_app_loop`); an async function on the sync app gets an awaitable of the value.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from contextvars import ContextVar
from typing import Any

from qtasks.exc import TaskCancelError, TaskPluginTriggerError

current_context: ContextVar[Context | None] = ContextVar("qtasks_context", default=None)


class Context:
    def __init__(
        self,
        task_name: str,
        task_uuid: str,
        app: Any,
        generate_handler: Any = None,
        is_async: bool = False,
        attempt: int = 0,
        awaiting: bool | None = None,
    ) -> None:
        self.task_name = task_name
        self.task_uuid = task_uuid
        self.generate_handler = generate_handler
        self.attempt = attempt
        self._app = app
        self._is_async = is_async  # the app's flavour
        # The function's flavour (the app's when not given): what the waiting methods return.
        self._awaiting = is_async if awaiting is None else awaiting
        self._metadata: Any = None

    def get_logger(self, name: str | None = None) -> logging.Logger:
        return logging.getLogger(f"qtasks.task.{name or self.task_name}")

    def get_config(self) -> Any:
        return None if self._app is None else self._app.config

    def get_metadata(self, cache: bool = True) -> Any:
        """This task's record (`app.get(own uuid)`); awaitable in an async function."""
        if cache and self._metadata is not None:
            return _ready(self._metadata) if self._awaiting else self._metadata
        if self._app is None:
            return _ready(None) if self._awaiting else None
        if self._awaiting:
            return self._cache_async(self._app.get(self.task_uuid))
        self._metadata = self._for_sync_body(self._app.get(self.task_uuid))
        return self._metadata

    async def _cache_async(self, result: Any) -> Any:
        self._metadata = await result if inspect.isawaitable(result) else result
        return self._metadata

    def get_task(self, uuid: str) -> Any:
        """Another task's record (`app.get(uuid)`); awaitable in an async function."""
        result = None if self._app is None else self._app.get(uuid)
        if self._awaiting:
            return result if inspect.isawaitable(result) else _ready(result)
        return self._for_sync_body(result)

    def sleep(self, seconds: float) -> Any:
        """Wait `seconds`: awaitable in an async function, blocking in a sync one."""
        if self._awaiting:
            return asyncio.sleep(seconds)
        time.sleep(seconds)
        return None

    def _for_sync_body(self, result: Any) -> Any:
        return run_on_app_loop(self._app, result) if inspect.iscoroutine(result) else result

    def cancel(self, reason: str | None = None) -> None:
        """End this task with status `cancel` (raises `TaskCancelError`)."""
        raise TaskCancelError(reason or "cancelled by the task")

    def plugin_error(self, **kwargs: Any) -> None:
        raise TaskPluginTriggerError(**kwargs)

    def get_component(self, name: str) -> Any:
        return getattr(self._app, name)


async def _ready(value: Any) -> Any:
    return value


def run_on_app_loop(app: Any, coro: Any) -> Any:
    """The result of `coro`, an asyncio app's call made from a sync task body: that body runs
    on a pool thread, and the call is run on the app's event loop and waited for. Anywhere
    else (the loop's own thread, no running worker) `coro` is returned for the caller to await,
    as before."""
    loop = getattr(getattr(app, "worker", None), "_loop", None)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
    return coro


SyncContext = Context
AsyncContext = Context
