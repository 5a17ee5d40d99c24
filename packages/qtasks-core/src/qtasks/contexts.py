"""`self.ctx` inside an `echo=True` task: the running execution's context.

The task handle is shared by concurrent executions, so the context lives in a `ContextVar` set by
the executor for each one; `self.ctx` always answers for the execution that asks.
"""

from __future__ import annotations

import asyncio
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
    ) -> None:
        self.task_name = task_name
        self.task_uuid = task_uuid
        self.generate_handler = generate_handler
        self.attempt = attempt
        self._app = app
        self._is_async = is_async
        self._metadata: Any = None

    def get_logger(self, name: str | None = None) -> logging.Logger:
        return logging.getLogger(f"qtasks.task.{name or self.task_name}")

    def get_config(self) -> Any:
        return None if self._app is None else self._app.config

    def get_metadata(self, cache: bool = True) -> Any:
        """This task's record (`app.get(own uuid)`); a coroutine on the asyncio app."""
        if cache and self._metadata is not None:
            return self._metadata
        if self._app is None:
            return None
        result = self._app.get(self.task_uuid)
        if self._is_async:
            return self._cache_async(result)
        self._metadata = result
        return result

    async def _cache_async(self, awaitable: Any) -> Any:
        self._metadata = await awaitable
        return self._metadata

    def get_task(self, uuid: str) -> Any:
        return None if self._app is None else self._app.get(uuid)

    def sleep(self, seconds: float) -> Any:
        if self._is_async:
            return asyncio.sleep(seconds)
        time.sleep(seconds)
        return None

    def cancel(self, reason: str | None = None) -> None:
        """End this task with status `cancel` (raises `TaskCancelError`)."""
        raise TaskCancelError(reason or "cancelled by the task")

    def plugin_error(self, **kwargs: Any) -> None:
        raise TaskPluginTriggerError(**kwargs)

    def get_component(self, name: str) -> Any:
        return getattr(self._app, name)


SyncContext = Context
AsyncContext = Context
