"""The objects `@app.task` returns: task handles and deferred calls.

Calling a handle does not run the function: `t(1, 2)` is a deferred call (`TaskCls`) with
`.add_task()`, as in qtasks 1.7; `t.add_task(1, 2)` enqueues at once. `t.func` is the function.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qtasks.contexts import Context, current_context, run_on_app_loop

if TYPE_CHECKING:
    from qtasks.apps.base import BaseQueueTasks
    from qtasks.registries.definition import TaskExecSchema


@dataclass
class TaskCls:
    """A deferred call: what calling a task handle returns."""

    task_name: str
    priority: int | None = None
    timeout: float | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    handle: Any = field(default=None, repr=False)

    def add_task(self, **options: Any) -> Any:
        return self.handle.add_task(
            *self.args,
            priority=self.priority,
            timeout=self.timeout,
            task_name=self.task_name,
            **options,
            **self.kwargs,
        )


SyncTaskCls = TaskCls
AsyncTaskCls = TaskCls


class TaskHandle:
    """Replaces a decorated function. `add_task` returns what the app's `add_task` returns
    (a coroutine on the asyncio app)."""

    def __init__(self, definition: TaskExecSchema, app: BaseQueueTasks | None = None) -> None:
        self.definition = definition
        self.app = app
        self.__doc__ = definition.func.__doc__
        self.__name__ = definition.name
        self.__wrapped__ = definition.func

    # 1.7 exposed these on the handle
    @property
    def task_name(self) -> str:
        return self.definition.name

    @property
    def priority(self) -> int:
        return self.definition.priority

    @property
    def func(self) -> Any:
        return self.definition.func

    @property
    def retry(self) -> int | None:
        return self.definition.retry

    @property
    def extra(self) -> dict[str, Any]:
        return self.definition.extra

    @property
    def ctx(self) -> Context:
        """The context of the execution running in the caller (echo tasks)."""
        ctx = current_context.get()
        if ctx is None:
            raise RuntimeError(f"{self.task_name}.ctx is only available while the task runs")
        return ctx

    def _app(self) -> Any:
        if self.app is None:
            from qtasks._state import default_app

            app = default_app()
            if app is None:
                raise RuntimeError(f"task {self.task_name!r} is not attached to any app")
            return app
        return self.app

    def add_task(
        self,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        task_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        app = self._app()
        result = app.add_task(
            task_name or self.task_name, *args, priority=priority, timeout=timeout, **kwargs
        )
        if current_context.get() is not None and inspect.iscoroutine(result):
            # A sync task body on the asyncio app: the coroutine would never be awaited, and
            # the child never enqueued.
            return run_on_app_loop(app, result)
        return result

    def __call__(
        self,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        task_name: str | None = None,
        **kwargs: Any,
    ) -> TaskCls:
        return TaskCls(task_name or self.task_name, priority, timeout, args, kwargs, self)

    def __repr__(self) -> str:
        return f"<task {self.task_name!r}>"


SyncTask = TaskHandle
AsyncTask = TaskHandle
