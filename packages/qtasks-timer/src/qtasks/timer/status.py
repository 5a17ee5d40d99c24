"""`ScheduleStatus`: one line of `timer.schedules()`, also readable from a stored record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from qtasks.timer.triggers import from_epoch


@dataclass(frozen=True)
class ScheduleStatus:
    id: str
    task_name: str
    trigger: str
    next_run_time: datetime | None
    last_run: datetime | None
    """Scheduled time of the newest tick enqueued (by any replica)."""
    last_task_uuid: str | None
    """The task that tick enqueued."""
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    misfire_grace_time: float | None = None
    coalesce: bool = True
    timer: str | None = None
    """Which timer process wrote the record last."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ScheduleStatus:
        """Parse a record of the GlobalConfig name `schedules` (what stats and web views read)."""
        return cls(
            id=str(record.get("id", "")),
            task_name=str(record.get("task_name", "")),
            trigger=str(record.get("trigger", "")),
            next_run_time=from_epoch(record.get("next_run_time")),
            last_run=from_epoch(record.get("last_run")),
            last_task_uuid=record.get("last_task_uuid"),
            args=list(record.get("args") or []),
            kwargs=dict(record.get("kwargs") or {}),
            priority=record.get("priority"),
            misfire_grace_time=record.get("misfire_grace_time"),
            coalesce=bool(record.get("coalesce", True)),
            timer=record.get("timer"),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
