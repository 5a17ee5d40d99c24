"""`TaskExecSchema`: a registered task's definition, and the checks made at enqueue.

Injected parameters (`Depends`, `State`, the echo `self`) are worked out once at registration, so
that enqueue can bind the caller's arguments to exactly the parameters a caller supplies.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qtasks.exc import TaskArgumentsError, TaskExitError
from qtasks.registries.checks import check_definition


@dataclass
class TaskExecSchema:
    name: str
    func: Callable[..., Any]
    priority: int = 0
    echo: bool = False
    max_time: float | None = None
    retry: int | None = None
    retry_on_exc: tuple[type[BaseException], ...] | None = None
    retry_backoff: float = 0.0
    """Delay before the first retry in seconds (0: enqueue at once, as in 1.7)."""
    retry_backoff_factor: float = 2.0
    retry_backoff_max: float = 600.0
    retry_jitter: bool = False
    decode: Callable[[Any], str] | None = None
    tags: list[str] | None = None
    description: str | None = None
    generate_handler: Callable[[Any], Any] | None = None
    executor: type[Any] | None = None
    middlewares_before: list[type[Any]] = field(default_factory=list)
    middlewares_after: list[type[Any]] = field(default_factory=list)
    queue: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)
    # Worked out at registration:
    awaiting: bool = field(init=False, default=False)
    generating: str | bool = field(init=False, default=False)
    depends: dict[str, Any] = field(init=False, default_factory=dict)
    states: dict[str, type[Any]] = field(init=False, default_factory=dict)
    public_signature: inspect.Signature = field(init=False, repr=False)
    _positional_counts: tuple[int, int] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        func = self.func
        self.awaiting = inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
        if inspect.isasyncgenfunction(func):
            self.generating = "async"
        elif inspect.isgeneratorfunction(func):
            self.generating = "sync"
        check_definition(self)
        self._inspect_parameters()

    def _inspect_parameters(self) -> None:
        from qtasks.plugins.builtin.depends import Depends
        from qtasks.plugins.builtin.state import State

        signature = inspect.signature(self.func)
        hints = _resolved_hints(self.func)
        public = []
        params = list(signature.parameters.values())
        if self.echo and params:
            params = params[1:]  # the task handle is injected as `self`
        for param in params:
            hint = hints.get(param.name, param.annotation)
            dep = param.default if isinstance(param.default, Depends) else None
            if dep is None and typing.get_origin(hint) is typing.Annotated:
                dep = next((m for m in typing.get_args(hint)[1:] if isinstance(m, Depends)), None)
                hint = typing.get_args(hint)[0]
            if dep is not None:
                self.depends[param.name] = dep
                continue
            if inspect.isclass(hint) and issubclass(hint, State):
                self.states[param.name] = hint
                continue
            public.append(param)
        self.public_signature = signature.replace(parameters=public)
        # Calls with positional arguments only, to a function with plain positional parameters,
        # bind exactly when their count fits: checked without building a BoundArguments.
        plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if all(param.kind in plain for param in public):
            required = sum(1 for param in public if param.default is inspect.Parameter.empty)
            self._positional_counts = (required, len(public))

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise `TaskArgumentsError` when the call cannot bind; nothing is written then."""
        counts = self._positional_counts
        if counts is not None and not kwargs and counts[0] <= len(args) <= counts[1]:
            return
        try:
            self.public_signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentsError(f"task {self.name!r}: {exc}") from None

    def retries_match(self, exc: BaseException) -> bool:
        """`retry_on_exc` matches subclasses too (1.7 matched exact types only), and the
        `BaseException` a `TaskExitError` stands for."""
        if self.retry_on_exc is None or isinstance(exc, self.retry_on_exc):
            return True
        return isinstance(exc, TaskExitError) and isinstance(exc.__cause__, self.retry_on_exc)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based)."""
        import random

        if self.retry_backoff <= 0:
            return 0.0
        delay = min(
            self.retry_backoff * self.retry_backoff_factor ** (attempt - 1), self.retry_backoff_max
        )
        return random.uniform(0, delay) if self.retry_jitter else delay


def _resolved_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Type hints of `func`, resolved one by one so that one unresolvable annotation (a class
    local to a function, say) does not hide the others."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # noqa: BLE001 - fall back to resolving parameter by parameter
        pass
    namespace = getattr(func, "__globals__", {})
    hints: dict[str, Any] = {}
    for name, annotation in getattr(func, "__annotations__", {}).items():
        if not isinstance(annotation, str):
            hints[name] = annotation
            continue
        try:
            hints[name] = eval(annotation, namespace)
        except Exception:  # noqa: BLE001 - unresolvable: the parameter is not injected
            continue
    return hints
