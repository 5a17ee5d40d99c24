"""The misfire policy: ticks missed while no timer ran, late ticks, and one-off triggers.

Catch-up is planned from the last run stored in the GlobalConfig (APScheduler's in-memory job
store forgets it across restarts), so these tests write the record a previous timer would have
left and start a new timer: no waiting for real ticks.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from qtasks import QueueTasks
from qtasks.timer import SCHEDULES, Schedule, SyncTimer, misfire, plan_catch_up
from qtasks.timer.schedule import TICKS

UTC = timezone.utc
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


# -- planning, with the clock as an argument -------------------------------------------------
def every_second() -> CronTrigger:
    return CronTrigger(second="*", timezone="UTC")


def test_coalesce_enqueues_the_newest_missed_tick_once() -> None:
    plan = plan_catch_up(every_second(), T0, T0 + timedelta(seconds=10.5), None, True)
    assert plan.run == [T0 + timedelta(seconds=10)]
    assert plan.coalesced == 9 and not plan.expired


def test_without_coalesce_every_missed_tick_is_enqueued_oldest_first() -> None:
    plan = plan_catch_up(every_second(), T0, T0 + timedelta(seconds=10.5), None, False)
    assert plan.run == [T0 + timedelta(seconds=s) for s in range(1, 11)]


def test_ticks_older_than_the_grace_time_are_skipped() -> None:
    plan = plan_catch_up(every_second(), T0, T0 + timedelta(seconds=10.5), 3.0, False)
    assert plan.run == [T0 + timedelta(seconds=s) for s in (8, 9, 10)]
    assert plan.expired
    coalesced = plan_catch_up(every_second(), T0, T0 + timedelta(seconds=10.5), 3.0, True)
    assert coalesced.run == [T0 + timedelta(seconds=10)] and coalesced.coalesced == 2


def test_nothing_missed_and_the_schedulers_own_tick_is_left_to_it() -> None:
    assert plan_catch_up(every_second(), T0, T0 + timedelta(seconds=0.5), None, True).run == []
    once = DateTrigger(T0 + timedelta(seconds=2))
    now = T0 + timedelta(seconds=3)
    assert plan_catch_up(once, T0, now, None, True).run == [T0 + timedelta(seconds=2)]
    assert plan_catch_up(once, T0, now, None, True, exclude=T0 + timedelta(seconds=2)).run == []


def test_a_huge_backlog_without_grace_time_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(misfire, "MAX_SCAN", 5_000)  # the same rule, walked faster
    plan = plan_catch_up(every_second(), T0, T0 + timedelta(days=2), None, True)
    assert plan.truncated and plan.run == []  # the newest ticks are out of reach: none
    recent = plan_catch_up(every_second(), T0, T0 + timedelta(days=2), 5.0, True)
    assert recent.run == [T0 + timedelta(days=2)] and recent.expired


# -- catch-up at start, against a GlobalConfig ----------------------------------------------
def make_app(url: str) -> QueueTasks:
    app = QueueTasks(name="timer-misfire", broker_url=url)

    @app.task(name="report")
    def report() -> None:
        return None

    return app


def ten_seconds(now: datetime) -> IntervalTrigger:
    # Ticks 95, 85, ... 5 s ago: every boundary the tests check is 5 s away from a tick.
    return IntervalTrigger(seconds=10, start_date=now - timedelta(seconds=95))


def leave_record(
    app: QueueTasks, schedule: Schedule, last_run: datetime | None, registered_at: datetime
) -> None:
    """What a timer that stopped earlier left in the GlobalConfig."""
    record = {
        **schedule.definition(),
        "registered_at": registered_at.timestamp(),
        "last_run": None if last_run is None else last_run.timestamp(),
        "last_task_uuid": "previous",
        "next_run_time": None,
        "timer": "gone",
    }
    app.broker.storage.global_config.set(SCHEDULES, schedule.id, record)


def enqueued_ticks(app: QueueTasks) -> list[str]:
    return sorted(task.extra["timer_tick"] for task in app.broker.storage.get_all())


@pytest.mark.parametrize(
    ("coalesce", "grace", "expected"),
    [
        (True, None, [-5]),
        (False, None, [-55, -45, -35, -25, -15, -5]),
        (False, 30.0, [-25, -15, -5]),
        (True, 30.0, [-5]),
    ],
)
def test_ticks_missed_while_every_timer_was_down(
    store_url: str, coalesce: bool, grace: float | None, expected: list[int]
) -> None:
    now = datetime.now(UTC)
    app = make_app(store_url)
    timer = SyncTimer(app)
    trigger = ten_seconds(now)
    schedule = timer.add_task(
        "report", trigger=trigger, coalesce=coalesce, misfire_grace_time=grace
    )
    leave_record(app, schedule, now - timedelta(seconds=65), now - timedelta(seconds=200))
    with timer:  # catch-up is done when start() returns
        ticks = enqueued_ticks(app)
    want = [
        (trigger.start_date + timedelta(seconds=95 + offset)).isoformat() for offset in expected
    ]
    assert ticks == want
    (status,) = timer.schedules()
    assert status.last_run is not None
    assert status.last_run.isoformat() == want[-1]


def test_a_schedule_that_never_ran_catches_up_from_its_registration(store_url: str) -> None:
    now = datetime.now(UTC)
    app = make_app(store_url)
    timer = SyncTimer(app)
    trigger = ten_seconds(now)
    schedule = timer.add_task("report", trigger=trigger)
    leave_record(app, schedule, None, now - timedelta(seconds=40))
    with timer:
        ticks = enqueued_ticks(app)
    # Missed since registration: -35, -25, -15, -5 s; coalesced into the newest.
    assert ticks == [(trigger.start_date + timedelta(seconds=90)).isoformat()]


def test_a_first_start_catches_nothing_up(store_url: str) -> None:
    app = make_app(store_url)
    timer = SyncTimer(app)
    timer.add_task("report", trigger=ten_seconds(datetime.now(UTC)))
    with timer:
        assert enqueued_ticks(app) == []
    assert "report" in str(app.broker.storage.global_config.get_all(SCHEDULES))


def test_timers_starting_together_catch_up_once(store_url: str) -> None:
    now = datetime.now(UTC)
    app = make_app(store_url)
    timers = [SyncTimer(app) for _ in range(3)]
    for timer in timers:
        schedule = timer.add_task("report", trigger=ten_seconds(now), coalesce=False)
    leave_record(app, schedule, now - timedelta(seconds=40), now - timedelta(seconds=200))
    barrier = threading.Barrier(len(timers))

    def start(timer: SyncTimer) -> None:
        barrier.wait(5)
        timer.start()

    threads = [threading.Thread(target=start, args=(t,)) for t in timers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    try:
        # -35, -25, -15 and -5 s: each once, not once per timer.
        assert len(enqueued_ticks(app)) == len(set(enqueued_ticks(app))) == 4
    finally:
        for timer in timers:
            timer.stop()


# -- live ticks ------------------------------------------------------------------------------
def test_a_late_tick_past_its_grace_time_is_skipped_and_a_tick_runs_once(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(store_url)
    timer = SyncTimer(app)
    schedule = timer.add_task("report", trigger=every_second(), misfire_grace_time=60)
    now = datetime.now(UTC).replace(microsecond=0)
    with caplog.at_level(logging.WARNING, logger="qtasks.timer"):
        # What the scheduler hands the executor after the process stalled for two minutes.
        timer._run_ticks(schedule.id, [now - timedelta(seconds=120)])
    assert enqueued_ticks(app) == []
    assert "past misfire_grace_time=60.0 s" in caplog.text
    timer._run_ticks(schedule.id, [now - timedelta(seconds=2), now - timedelta(seconds=1)])
    timer._run_ticks(schedule.id, [now - timedelta(seconds=1)])  # a replica's second try
    assert enqueued_ticks(app) == [(now - timedelta(seconds=s)).isoformat() for s in (2, 1)]


def test_a_one_off_trigger_does_not_run_again_after_a_restart(store_url: str, ledger: Any) -> None:
    app = make_app(store_url)
    app.add_plugin(ledger, component="timer")
    when = datetime.now(UTC) + timedelta(seconds=0.2)
    first = SyncTimer(app)
    first.add_task("report", trigger=DateTrigger(when), schedule_id="once")
    with first:
        assert ledger.wait_enqueued(1)
    # Even once the tick's claim has expired, the stored last run keeps it from re-running.
    config = app.broker.storage.global_config
    for key in config.get_all(TICKS):
        config.delete(TICKS, key)
    second = SyncTimer(app)
    second.add_task("report", trigger=DateTrigger(when), schedule_id="once")
    with second:
        (status,) = second.schedules()
    assert len(app.broker.storage.get_all()) == 1
    assert status.last_run == when and status.next_run_time is None
