"""Errors raised by `add_task` (at registration, never later inside the scheduler)."""

from __future__ import annotations

from qtasks.exc import QTasksError


class TimerError(QTasksError):
    """Base class of qtasks-timer's own errors."""


class InvalidTriggerError(TimerError, TypeError):
    """`trigger` is missing, is not an APScheduler 3.x trigger, or cannot be shared by replicas."""


class DuplicateScheduleError(TimerError, ValueError):
    """A schedule with this id was already added to the timer."""
