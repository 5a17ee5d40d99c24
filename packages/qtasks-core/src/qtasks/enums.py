"""Task statuses."""

from __future__ import annotations

from enum import Enum


class TaskStatusEnum(str, Enum):
    """The life of a task: `new -> process -> success | error | cancel`; `retry` when re-enqueued.

    The values are the strings stored in records, as in qtasks 1.7.
    """

    NEW = "new"
    PROCESS = "process"
    SUCCESS = "success"
    ERROR = "error"
    CANCEL = "cancel"
    RETRY = "retry"

    def __str__(self) -> str:
        return self.value


# The values as plain strings for the hot path: an enum member's `.value` is a property lookup
# per access, on every task.
STATUS_NEW = TaskStatusEnum.NEW.value
STATUS_PROCESS = TaskStatusEnum.PROCESS.value
STATUS_SUCCESS = TaskStatusEnum.SUCCESS.value
STATUS_ERROR = TaskStatusEnum.ERROR.value
STATUS_CANCEL = TaskStatusEnum.CANCEL.value

FINAL_STATUSES: frozenset[str] = frozenset({"success", "error", "cancel", "retry"})
"""Statuses after which a record is never rewritten by a worker (`retry` points to its child)."""
