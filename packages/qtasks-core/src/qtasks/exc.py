"""Typed errors. Every error a user can meet names what was wrong and never carries a secret."""

from __future__ import annotations


class QTasksError(Exception):
    """Base class of every qtasks error."""


class ConfigError(QTasksError, ValueError):
    """A configuration field got a value of the wrong type or out of range."""


class ComponentNotFoundError(QTasksError, LookupError):
    """No installed component matches what was asked (URL scheme, entry-point name)."""


class UnknownTaskError(QTasksError, KeyError):
    """A task name that is not in the registry. A name never chooses code outside it."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown task"


class TaskArgumentsError(QTasksError, TypeError):
    """Arguments do not bind to the task function's signature."""


class TaskOptionError(QTasksError, TypeError, ValueError):
    """An enqueue option (priority, eta, delay, timeout, queue, headers, extra) or an
    `@app.task(...)` option has a wrong type or value. Raised before anything is written or
    registered."""


class SerializationError(QTasksError, TypeError):
    """A value cannot be encoded as JSON (arguments at enqueue, or a task's result)."""


class PayloadTooLargeError(QTasksError, ValueError):
    """An encoded task is larger than `config.max_payload_bytes`."""


class ResultTooLargeError(QTasksError, ValueError):
    """A task's encoded result is larger than `config.max_result_bytes`; the task ends `error`."""


class DecodeError(QTasksError, ValueError):
    """Bytes found in a queue are not a valid task envelope. `reason` is a short machine word."""

    def __init__(self, message: str, reason: str = "decode_error") -> None:
        super().__init__(message)
        self.reason = reason


class BrokerError(QTasksError, ConnectionError):
    """The broker could not be reached or refused an operation. Producers see this, typed."""


class QueueFullError(BrokerError):
    """The broker refused a write for lack of memory or a queue bound (back-pressure)."""


class LeaseLostError(QTasksError):
    """A worker tried to finish a task whose lease another worker now holds."""


class TaskCancelError(QTasksError, RuntimeError):
    """Raised inside a task by `self.ctx.cancel(reason)`; the task ends with status `cancel`."""


class TaskPluginTriggerError(QTasksError):
    """Raised inside a task by `self.ctx.plugin_error(**kw)`: plugins may supply a result."""

    def __init__(self, message: str = "plugin trigger", **kwargs: object) -> None:
        super().__init__(message)
        self.kwargs = kwargs


class TaskTimeoutError(QTasksError, TimeoutError):
    """A task ran longer than its `max_time`."""


class TaskExitError(QTasksError):
    """A task body raised a `BaseException` that is not an `Exception`: `SystemExit`,
    `KeyboardInterrupt` on a pool thread (where no signal raises it), or a `CancelledError` the
    worker did not send (an inner task the body awaited was cancelled). The task ends as
    `error`, with the original as `__cause__`, instead of taking the worker's thread or loop
    with it and being run again and again."""

    @classmethod
    def of(cls, task_name: str, exc: BaseException) -> TaskExitError:
        detail = f": {exc}" if str(exc) else ""
        error = cls(f"task {task_name!r} raised {type(exc).__name__}{detail}")
        error.__cause__ = exc
        return error
