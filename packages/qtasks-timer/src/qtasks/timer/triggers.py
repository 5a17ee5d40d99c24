"""What the timer needs to know about an APScheduler trigger: validity, identity, tick keys.

Replicas agree on a tick only if they compute the same key for it, so keys come from the
scheduled fire time (never from the moment a process happened to wake up).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from qtasks.timer.errors import InvalidTriggerError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def check_trigger(trigger: Any) -> None:
    """Raise `InvalidTriggerError` unless `trigger` is an APScheduler trigger replicas can share."""
    if trigger is None:
        raise InvalidTriggerError(
            "add_task needs trigger=..., an APScheduler trigger such as "
            "CronTrigger(second='*/10') or IntervalTrigger(seconds=5)"
        )
    if not isinstance(trigger, BaseTrigger):
        raise InvalidTriggerError(
            f"trigger must be an APScheduler 3.x trigger (apscheduler.triggers.*), got "
            f"{type(trigger).__name__} {trigger!r}; for a crontab line use "
            "CronTrigger.from_crontab('*/5 * * * *')"
        )
    if _has_jitter(trigger):
        # A jittered fire time is random per process, so replicas would claim different
        # ticks and each enqueue once: the exactly-once guarantee would silently not hold.
        raise InvalidTriggerError(
            f"{trigger} has jitter; timers cannot agree on a jittered tick across replicas. "
            "Drop jitter (or add it inside the task)"
        )
    if isinstance(trigger, IntervalTrigger) and interval_us(trigger) <= 0:
        raise InvalidTriggerError(f"{trigger}: the interval must be positive")


def _has_jitter(trigger: Any) -> bool:
    if getattr(trigger, "jitter", None):
        return True
    return any(_has_jitter(child) for child in getattr(trigger, "triggers", ()) or ())


def describe(trigger: Any) -> str:
    """A stable text for the trigger: the same in every process that builds the same trigger.

    `str()` of a DateTrigger drops microseconds and `str()` of a CronTrigger drops the
    timezone, so both are added back; an IntervalTrigger's (per-process) start is left out.
    """
    if isinstance(trigger, DateTrigger):
        return f"date[{trigger.run_date.isoformat()}]"
    zone = getattr(trigger, "timezone", None)
    return f"{trigger} tz={zone}" if zone is not None else str(trigger)


def epoch_us(moment: datetime) -> int:
    """Whole microseconds since the epoch, exactly (no float rounding)."""
    return (moment - EPOCH) // _MICROSECOND


def from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def interval_us(trigger: IntervalTrigger) -> int:
    return int(trigger.interval // _MICROSECOND)


def tick_slot(trigger: Any, run_time: datetime) -> str:
    """The part of a tick's claim key that names the tick.

    An IntervalTrigger built without `start_date` starts one interval after its process built
    it, so replicas fire at different offsets. Keying its ticks by interval slot since the epoch
    (rounded to the nearest, since APScheduler computes interval times in float seconds) makes
    each slot enqueue once whatever the offsets. Other triggers fire at the same instants in
    every process and are keyed by that instant.
    """
    if isinstance(trigger, IntervalTrigger):
        step = interval_us(trigger)
        return f"slot{(epoch_us(run_time) + step // 2) // step}"
    return f"at{epoch_us(run_time)}"


def next_after(trigger: Any, fire_time: datetime) -> datetime | None:
    """The fire time following `fire_time` (None when the trigger is exhausted)."""
    nxt: datetime | None = trigger.get_next_fire_time(fire_time, fire_time)
    return nxt


def period_seconds(trigger: Any, fire_time: datetime) -> float | None:
    """Seconds from `fire_time` to the next tick, or None for a one-off trigger."""
    nxt = next_after(trigger, fire_time)
    return None if nxt is None else max(0.0, (nxt - fire_time).total_seconds())


def first_fire(trigger: Any, now: datetime, after: datetime | None) -> datetime | None:
    """The job's first fire time as APScheduler computes it, skipping ticks up to `after`
    (already run: a DateTrigger in the past must not run again on every restart)."""
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    while fire is not None and after is not None and fire <= after:
        fire = next_after(trigger, fire)
    return fire


def fire_times(trigger: Any, after: datetime, until: datetime) -> Iterator[datetime]:
    """Fire times in `(after, until]`, oldest first."""
    fire: datetime | None = trigger.get_next_fire_time(None, after + _MICROSECOND)
    while fire is not None and fire <= after:  # DateTrigger ignores `now`
        fire = next_after(trigger, fire)
    while fire is not None and fire <= until:
        yield fire
        fire = next_after(trigger, fire)
