"""`Depends`: dependency injection with scopes, as a plugin on the executor's triggers.

`db=Depends(get_db)` or `Annotated[DB, Depends(get_db)]`. The function is called with no
arguments; a generator, async generator or (async) context manager is entered and closed when its
scope ends: `task` (after each execution), `worker`, `broker`, `storage`, `global_config` (when that
component stops). Task-scoped values live on the executor of one execution, so two concurrent
tasks never see (or close) each other's dependencies.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

from qtasks.hookspecs import hookimpl

SCOPES = ("task", "worker", "broker", "storage", "global_config")
_ATTR = "_qtasks_depends_scope"


class Depends:
    def __init__(self, func: Any, scope: str = "task") -> None:
        if scope not in SCOPES:
            raise ValueError(f"Depends scope must be one of {', '.join(SCOPES)}; got {scope!r}")
        if not callable(func):
            raise TypeError("Depends needs a callable")
        self.func = func
        self.scope = scope

    def __repr__(self) -> str:
        return f"Depends({getattr(self.func, '__name__', self.func)!r}, scope={self.scope!r})"


class _Scope:
    """Values of one scope and the exit stack that closes them."""

    def __init__(self, is_async: bool) -> None:
        self.values: dict[Any, Any] = {}
        self.stack: contextlib.AsyncExitStack | contextlib.ExitStack = (
            contextlib.AsyncExitStack() if is_async else contextlib.ExitStack()
        )


def _scope_of(owner: Any, is_async: bool) -> _Scope:
    scope = owner.__dict__.get(_ATTR)
    if scope is None:
        scope = _Scope(is_async)
        owner.__dict__[_ATTR] = scope
    return scope  # type: ignore[no-any-return]


def _owner(executor: Any, scope: str) -> Any:
    if scope == "task":
        return executor
    worker = executor.worker
    if scope == "worker" or worker is None:
        return worker if worker is not None else executor
    broker = worker.broker
    if scope == "broker":
        return broker
    storage = broker.storage
    if scope == "storage":
        return storage
    return storage.global_config if storage.global_config is not None else storage


def _enter_sync(scope: _Scope, dep: Depends) -> Any:
    func = dep.func
    stack = scope.stack
    assert isinstance(stack, contextlib.ExitStack)
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(f"{dep!r} is async; use the asyncio app")
    if inspect.isgeneratorfunction(func):
        return stack.enter_context(contextlib.contextmanager(func)())
    value = func()
    if hasattr(value, "__enter__") and hasattr(value, "__exit__"):
        return stack.enter_context(value)
    return value


async def _enter_async(scope: _Scope, dep: Depends) -> Any:
    func = dep.func
    stack = scope.stack
    assert isinstance(stack, contextlib.AsyncExitStack)
    if inspect.isasyncgenfunction(func):
        return await stack.enter_async_context(contextlib.asynccontextmanager(func)())
    if inspect.isgeneratorfunction(func):
        return stack.enter_context(contextlib.contextmanager(func)())
    value = func()
    if inspect.isawaitable(value):
        value = await value
    if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
        return await stack.enter_async_context(value)
    if hasattr(value, "__enter__") and hasattr(value, "__exit__"):
        return stack.enter_context(value)
    return value


def _close(owner: Any) -> Any:
    scope = owner.__dict__.pop(_ATTR, None) if owner is not None else None
    if scope is None:
        return None
    if isinstance(scope.stack, contextlib.AsyncExitStack):
        return scope.stack.aclose()
    scope.stack.close()
    return None


class DependsPlugin:
    @staticmethod
    def applies_to(task_func: Any) -> bool:
        """Only tasks with `Depends` parameters (see `PluginHost.wants_for`); the worker-,
        broker- and app-scoped values they open are closed by the stop triggers, which fire
        whatever this says."""
        return bool(task_func.depends)

    @hookimpl
    def task_executor_args_replace(self, task_executor: Any, kw: dict[str, Any]) -> Any:
        depends = task_executor.task_func.depends
        if not depends:
            return None
        wanted = {name: dep for name, dep in depends.items() if name not in kw}
        if not task_executor.is_async:
            values = {}
            for name, dep in wanted.items():
                scope = _scope_of(_owner(task_executor, dep.scope), False)
                if dep.func not in scope.values:
                    scope.values[dep.func] = _enter_sync(scope, dep)
                values[name] = scope.values[dep.func]
            return {"kw": {**kw, **values}}
        return self._resolve_async(task_executor, kw, wanted)

    async def _resolve_async(
        self, executor: Any, kw: dict[str, Any], wanted: dict[str, Depends]
    ) -> dict[str, Any]:
        values = {}
        for name, dep in wanted.items():
            scope = _scope_of(_owner(executor, dep.scope), True)
            if dep.func not in scope.values:
                scope.values[dep.func] = await _enter_async(scope, dep)
            values[name] = scope.values[dep.func]
        return {"kw": {**kw, **values}}

    @hookimpl
    def task_executor_task_close(self, task_executor: Any) -> Any:
        return _close(task_executor)

    @hookimpl
    def worker_stop(self, worker: Any) -> Any:
        return _close(worker)

    @hookimpl
    def broker_stop(self, broker: Any) -> Any:
        return _close(broker)

    @hookimpl
    def storage_stop(self, storage: Any) -> Any:
        return _close(storage)

    @hookimpl
    def global_config_stop(self, global_config: Any) -> Any:
        return _close(global_config)
