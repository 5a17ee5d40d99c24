"""`@task` registration, shared by apps, routers and `shared_task`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from qtasks.registries.definition import TaskExecSchema
from qtasks.registries.handles import TaskHandle

F = TypeVar("F", bound=Callable[..., Any])


class TaskRegistrar:
    """Holds task definitions and builds handles; `app.task`, `router.task`."""

    default_priority: int | None = None  # None: the app config's task_default_priority

    def __init__(self) -> None:
        self.tasks: dict[str, TaskExecSchema] = {}
        self.handles: dict[str, TaskHandle] = {}

    def _priority(self) -> int:
        return 0 if self.default_priority is None else self.default_priority

    def _app_ref(self) -> Any:
        return None

    @overload
    def task(self, name: Callable[..., Any], /) -> TaskHandle: ...

    @overload
    def task(
        self, name: str | None = None, /, **options: Any
    ) -> Callable[[Callable[..., Any]], TaskHandle]: ...

    def task(
        self, name: str | Callable[..., Any] | None = None, /, **options: Any
    ) -> TaskHandle | Callable[[Callable[..., Any]], TaskHandle]:
        """Register a task: `@app.task`, `@app.task()`, `@app.task("name")`,
        `@app.task(name="x", priority=1, retry=3, ...)`. Unknown keywords are extras."""
        if callable(name):
            return self._register(name, None, {})
        task_name = options.pop("name", None) or name

        def decorate(func: Callable[..., Any]) -> TaskHandle:
            return self._register(func, task_name, options)

        return decorate

    def _register(
        self, func: Callable[..., Any], name: str | None, options: dict[str, Any]
    ) -> TaskHandle:
        task_name = name or func.__name__
        if task_name in self.tasks:
            raise ValueError(f"task {task_name!r} is already registered")
        known = TaskExecSchema.__dataclass_fields__
        fields = {k: v for k, v in options.items() if k in known and known[k].init}
        extra = {k: v for k, v in options.items() if k not in fields}
        if fields.get("priority") is None:
            fields["priority"] = self._priority()
        exc = fields.get("retry_on_exc")
        if exc is not None:
            fields["retry_on_exc"] = tuple(exc) if isinstance(exc, (list, tuple)) else (exc,)
        for key in ("middlewares_before", "middlewares_after"):
            if fields.get(key) is None:
                fields.pop(key, None)
        definition = TaskExecSchema(
            name=task_name, func=func, extra={**fields.pop("extra", {}), **extra}, **fields
        )
        handle = TaskHandle(definition, self._app_ref())
        self.tasks[task_name] = definition
        self.handles[task_name] = handle
        return handle


class Router(TaskRegistrar):
    """Tasks defined apart from the app, added with `app.include_router(router)`."""


SyncRouter = Router
AsyncRouter = Router


class _SharedRegistry(TaskRegistrar):
    """Tasks of `shared_task`: every app merges them when it is built and when it starts."""


shared_registry = _SharedRegistry()


def shared_task(name: str | Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Register a task with no app; the app that merges it (the last built) runs and enqueues
    it. `awaiting=` is accepted for 1.7 compatibility (the app flavour decides)."""
    options.pop("awaiting", None)
    return shared_registry.task(name, **options)
