"""Checks of `@app.task(...)` options, made when the task is registered.

A wrong option used to be accepted and to fail only when a task ran: `retry_on_exc="ValueError"`
made every failure of the task a worker error, so the task ran again until it was
dead-lettered; `retry=1.5` or `max_time="5"` failed inside the worker. Each is a
`TaskOptionError` naming the task and the option now, before the task is registered.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from qtasks.exc import TaskOptionError
from qtasks.schemas.options import check_name, check_priority, check_queue

if TYPE_CHECKING:
    from qtasks.registries.definition import TaskExecSchema


def check_definition(d: TaskExecSchema) -> None:
    """Normalise `d`'s options in place, or raise `TaskOptionError`."""
    check_name(d.name)
    what = f"task {d.name!r}"
    d.priority = check_priority(d.priority, what)
    d.queue = check_queue(d.queue, what) or "default"
    if d.retry is not None and (type(d.retry) is not int or d.retry < 0):
        raise TaskOptionError(f"{what}: retry must be an int, 0 or more, not {d.retry!r}")
    if d.max_time is not None:
        d.max_time = _seconds(d.max_time, "max_time", what, positive=True)
    d.retry_backoff = _seconds(d.retry_backoff, "retry_backoff", what)
    d.retry_backoff_max = _seconds(d.retry_backoff_max, "retry_backoff_max", what)
    d.retry_backoff_factor = _seconds(
        d.retry_backoff_factor, "retry_backoff_factor", what, positive=True
    )
    for flag in ("echo", "retry_jitter"):
        if type(getattr(d, flag)) is not bool:
            raise TaskOptionError(f"{what}: {flag} must be a bool, not {getattr(d, flag)!r}")
    if d.retry_on_exc is not None and not all(
        isinstance(exc, type) and issubclass(exc, BaseException) for exc in d.retry_on_exc
    ):
        raise TaskOptionError(
            f"{what}: retry_on_exc must be exception classes, not {d.retry_on_exc!r}"
        )
    for name in ("decode", "generate_handler"):
        value = getattr(d, name)
        if value is not None and not callable(value):
            raise TaskOptionError(f"{what}: {name} must be callable, not {value!r}")
    if d.executor is not None and not isinstance(d.executor, type):
        raise TaskOptionError(f"{what}: executor must be a class, not {d.executor!r}")
    for name in ("middlewares_before", "middlewares_after"):
        value = getattr(d, name)
        if not isinstance(value, (list, tuple)) or not all(callable(m) for m in value):
            raise TaskOptionError(f"{what}: {name} must be a list of middleware classes")
        setattr(d, name, list(value))
    if d.tags is not None and (
        not isinstance(d.tags, (list, tuple)) or not all(isinstance(t, str) for t in d.tags)
    ):
        raise TaskOptionError(f"{what}: tags must be a list of str, not {d.tags!r}")
    if d.description is not None and not isinstance(d.description, str):
        raise TaskOptionError(f"{what}: description must be a str, not {d.description!r}")


def _seconds(value: Any, name: str, what: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskOptionError(f"{what}: {name} must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "0 or more"
        raise TaskOptionError(f"{what}: {name} must be finite and {kind}, not {value!r}")
    return float(value)
