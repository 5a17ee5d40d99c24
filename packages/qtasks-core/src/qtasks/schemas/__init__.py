"""Pure data shared by every component: the wire envelope and the task record."""

from __future__ import annotations

from qtasks.schemas.envelope import Envelope
from qtasks.schemas.task import Task

__all__ = ["Envelope", "Task"]
