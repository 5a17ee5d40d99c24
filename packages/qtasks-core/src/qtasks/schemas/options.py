"""Checks of a task's enqueue options (priority, eta, delay, timeout, queue, headers, extra).

They run where a call comes in, before its plugins and before anything is written; again on
what a plugin replaced; and in `make_envelope` for a call that did not come through the app
(a direct `broker.add`). Without them a
priority of `"1"` or `1.5` was written and then dead-lettered by the worker, which could not
read it back, and a timeout of `"1"` failed only after its task was enqueued.
"""

from __future__ import annotations

import math
from typing import Any

from qtasks.exc import TaskOptionError

ENQUEUE_OPTIONS = frozenset({"priority", "timeout", "eta", "delay", "queue", "extra", "headers"})
"""The keywords of `app.enqueue` besides the task's `args` and `kwargs`."""


def check_priority(priority: Any, what: str) -> int:
    """`priority` as a plain int: an int subclass (an `IntEnum`) becomes its value; a bool, a
    float or text is refused (JSON would carry `true` or `1.5`, which no worker reads back)."""
    if type(priority) is int:
        return priority
    if isinstance(priority, int) and not isinstance(priority, bool):
        return int(priority)
    raise TaskOptionError(f"{what}: priority must be an int, not {type(priority).__name__}")


def check_seconds(value: Any, name: str, what: str, negative: bool = True) -> float | None:
    """A time option (epoch seconds or a duration): None, or a finite real number;
    `negative=False` also refuses values below zero."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskOptionError(f"{what}: {name} must be a number, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise TaskOptionError(f"{what}: {name} must be finite, not {value!r}")
    if not negative and seconds < 0:
        raise TaskOptionError(f"{what}: {name} must be 0 or more, not {value!r}")
    return seconds


def check_queue(queue: Any, what: str) -> str | None:
    if queue is None or (type(queue) is str and queue and queue.isascii()):
        return queue
    if not isinstance(queue, str):
        raise TaskOptionError(f"{what}: queue must be a str, not {type(queue).__name__}")
    if not queue:
        raise TaskOptionError(f"{what}: queue must not be empty")
    _utf8(queue, "queue", what)
    return queue


def check_headers(headers: Any, what: str) -> None:
    """Headers map text to text (trace context, as every propagator writes it)."""
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise TaskOptionError(f"{what}: headers must be a dict, not {type(headers).__name__}")
    for key, value in headers.items():
        if (type(key) is not str or type(value) is not str) and not (
            isinstance(key, str) and isinstance(value, str)
        ):
            raise TaskOptionError(
                f"{what}: headers must map str to str; got {type(key).__name__} {key!r} "
                f"to {type(value).__name__}"
            )


def check_extra(extra: Any, what: str) -> None:
    if extra is not None and not isinstance(extra, dict):
        raise TaskOptionError(f"{what}: extra must be a dict, not {type(extra).__name__}")


def check_name(task_name: Any) -> None:
    if type(task_name) is not str or not task_name:
        raise TaskOptionError(
            f"a task name must be a non-empty str, not {type(task_name).__name__} {task_name!r}"
        )


def check_call(task_name: Any, args: Any, kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call's parts as the envelope takes them. A string as `args` would otherwise become one
    argument per character."""
    check_name(task_name)
    if not isinstance(args, (tuple, list)):
        raise TaskOptionError(
            f"task {task_name!r}: args must be a tuple or list, not {type(args).__name__}"
        )
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TaskOptionError(
            f"task {task_name!r}: kwargs must be a dict, not {type(kwargs).__name__}"
        )
    return tuple(args), dict(kwargs or {})


def check_options(
    task_name: str,
    priority: Any,
    eta: Any,
    queue: Any,
    headers: Any,
    extra: Any,
) -> tuple[Any, float | None, str | None]:
    """Every option of one enqueue; -> (priority, eta, queue) normalised. A priority of None
    (the task's default) passes, as the app fills it in later."""
    what = f"task {task_name!r}"
    if priority is not None and type(priority) is not int:
        priority = check_priority(priority, what)
    if eta is not None:
        eta = check_seconds(eta, "eta", what)
    if queue is not None:
        queue = check_queue(queue, what)
    if headers is not None:
        check_headers(headers, what)
    if extra is not None:
        check_extra(extra, what)
    return priority, eta, queue


def _utf8(text: str, name: str, what: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise TaskOptionError(f"{what}: {name} {text!r} is not valid UTF-8 text") from None
