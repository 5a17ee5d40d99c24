"""A schedule (task + trigger + misfire policy), its claim keys and its stored record.

Records live in the app's GlobalConfig under the name `schedules`, one key per schedule id, as
plain JSON-friendly dicts (epoch seconds for times), so stats, the CLI and the web view can read
them without importing APScheduler.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from qtasks.timer.triggers import describe, next_after, period_seconds, tick_slot

SCHEDULES = "schedules"
"""GlobalConfig name holding one record per schedule."""
TICKS = "timer_ticks"
"""GlobalConfig name holding one claim per (schedule, tick), with a TTL."""
CATCH_UPS = "timer_catch_ups"
"""GlobalConfig name holding one claim per (schedule, last run) catch-up decision."""

DEFAULT_MISFIRE_GRACE_TIME = 60.0
MIN_CLAIM_TTL = 60.0
ONE_OFF_CLAIM_TTL = 86_400.0


@dataclass(eq=False)
class Schedule:
    """One `timer.add_task(...)`: what to enqueue, when, and what to do with missed ticks."""

    id: str
    task_name: str
    trigger: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    misfire_grace_time: float | None = DEFAULT_MISFIRE_GRACE_TIME
    coalesce: bool = True
    # Mirrored from the stored record (the newest this process saw):
    registered_at: float | None = None
    last_run: float | None = None
    last_task_uuid: str | None = None

    @staticmethod
    def derive_id(
        task_name: str,
        trigger: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int | None,
    ) -> str:
        """The same id in every process that adds the same schedule, so replicas share ticks."""
        text = json.dumps(
            [task_name, describe(trigger), list(args), kwargs, priority],
            sort_keys=True,
            default=repr,
        )
        return f"{task_name}:{hashlib.sha1(text.encode()).hexdigest()[:12]}"

    def tick_key(self, run_time: datetime) -> str:
        return f"{self.id}|{tick_slot(self.trigger, run_time)}"

    def claim_ttl(self, run_time: datetime) -> float:
        """How long a tick's claim must outlive it: past the grace time (a late replica or a
        catch-up may still consider the tick) and past the next tick (a slow replica)."""
        period = period_seconds(self.trigger, run_time)
        grace = self.misfire_grace_time or 0.0
        if period is None:
            return max(ONE_OFF_CLAIM_TTL, grace)
        return max(MIN_CLAIM_TTL, 2 * period, grace + period)

    def definition(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_name": self.task_name,
            "trigger": describe(self.trigger),
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "priority": self.priority,
            "misfire_grace_time": self.misfire_grace_time,
            "coalesce": self.coalesce,
        }

    def record(self, timer_id: str, next_run_time: datetime | None) -> dict[str, Any]:
        """The stored record: the definition plus run state (epoch seconds)."""
        return {
            **self.definition(),
            "registered_at": self.registered_at,
            "next_run_time": None if next_run_time is None else next_run_time.timestamp(),
            "last_run": self.last_run,
            "last_task_uuid": self.last_task_uuid,
            "timer": timer_id,
        }

    def adopt(self, record: dict[str, Any]) -> None:
        """Take the run state of a stored record (as written by any replica)."""
        self.registered_at = _float(record.get("registered_at"), self.registered_at)
        last_run = _float(record.get("last_run"), None)
        if last_run is not None and (self.last_run is None or last_run >= self.last_run):
            self.last_run = last_run
            self.last_task_uuid = record.get("last_task_uuid") or self.last_task_uuid

    def next_run_after(self, run_time: datetime) -> datetime | None:
        return next_after(self.trigger, run_time)


def _float(value: Any, default: float | None) -> float | None:
    try:
        return default if value is None else float(value)
    except (TypeError, ValueError):
        return default
