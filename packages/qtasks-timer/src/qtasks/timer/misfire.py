"""The misfire policy: which ticks missed while no timer ran are enqueued when one starts.

APScheduler's in-memory job store forgets a job's past across restarts, so the timer keeps the
last tick it enqueued per schedule in the app's GlobalConfig and, on start, plans here which of
the ticks since then to enqueue. The planning is pure (the clock is an argument) so it is tested
without waiting.

Policy, per schedule:

- a missed tick older than `misfire_grace_time` seconds is skipped (`None`: no limit);
- of the ticks within the grace time, `coalesce=True` enqueues only the newest, once;
  `coalesce=False` enqueues each, oldest first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from qtasks.timer.triggers import fire_times

MAX_SCAN = 100_000
"""Missed ticks a catch-up walks at most (matters only with `misfire_grace_time=None`)."""
MAX_REPLAY = 1_000
"""Missed ticks a catch-up enqueues at most with `coalesce=False` (the newest ones)."""


@dataclass
class CatchUp:
    run: list[datetime] = field(default_factory=list)
    """Ticks to enqueue now, oldest first."""
    coalesced: int = 0
    """Ticks within the grace time folded into the newest one (coalesce)."""
    expired: bool = False
    """Some missed ticks were older than the grace time and are skipped."""
    truncated: bool = False
    """More than MAX_REPLAY missed ticks (the oldest are dropped), or more than MAX_SCAN
    (none is enqueued: the newest are out of reach)."""


def plan_catch_up(
    trigger: Any,
    since: datetime,
    now: datetime,
    grace: float | None,
    coalesce: bool,
    exclude: datetime | None = None,
) -> CatchUp:
    """Ticks in `(since, now]` to enqueue at start; `exclude` is the scheduler's own first tick
    (a past DateTrigger), which the running scheduler enqueues itself."""
    plan = CatchUp()
    lower = since
    if grace is not None:
        horizon = now - timedelta(seconds=grace)
        if horizon > since:
            lower = horizon
            # Only whether one expired tick exists is worth a log line, not how many.
            plan.expired = next(fire_times(trigger, since, horizon), None) is not None
    found: deque[datetime] = deque(maxlen=1 if coalesce else MAX_REPLAY)
    total = 0
    for fire in fire_times(trigger, lower, now):
        if fire == exclude:
            continue
        total += 1
        found.append(fire)
        if total >= MAX_SCAN:
            # The newest ticks are out of reach: enqueue none rather than a stale one.
            plan.truncated = True
            return plan
    plan.run = list(found)
    if coalesce:
        plan.coalesced = max(0, total - 1)
    elif total > len(found):
        plan.truncated = True
    return plan
