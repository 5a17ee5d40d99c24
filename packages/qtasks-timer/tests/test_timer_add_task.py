"""`add_task`: how a schedule is named, and the errors it raises before anything runs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from qtasks import QueueTasks
from qtasks.exc import (
    PayloadTooLargeError,
    SerializationError,
    TaskArgumentsError,
    TaskOptionError,
    UnknownTaskError,
)
from qtasks.timer import (
    AsyncTimer,
    DuplicateScheduleError,
    InvalidTriggerError,
    Schedule,
    SyncTimer,
)
from qtasks.timer.triggers import tick_slot


def make_app() -> QueueTasks:
    app = QueueTasks(name="timer-add", broker_url=f"memory://add-{uuid.uuid4().hex[:8]}")

    @app.task(name="report")
    def report(day: str = "today", *, verbose: bool = False) -> str:
        return day

    return app


@pytest.fixture(params=[SyncTimer, AsyncTimer])
def timer(request: pytest.FixtureRequest) -> SyncTimer | AsyncTimer:
    timer_cls: type[SyncTimer | AsyncTimer] = request.param
    return timer_cls(make_app())


def test_facade_resolves_both_timers_through_entry_points() -> None:
    from qtasks.timers import AsyncTimer as FacadeAsync
    from qtasks.timers import SyncTimer as FacadeSync

    assert FacadeAsync is AsyncTimer
    assert FacadeSync is SyncTimer


def test_task_name_positional_keyword_or_handle_give_one_schedule() -> None:
    app = make_app()
    trigger = CronTrigger(second="*/10", timezone="UTC")
    by_position = SyncTimer(app).add_task("report", "mon", trigger=trigger, verbose=True)
    # 1.7 style: arguments first, the name as a keyword.
    by_keyword = SyncTimer(app).add_task("mon", task_name="report", trigger=trigger, verbose=True)
    by_handle = SyncTimer(app).add_task(app.handles["report"], "mon", trigger=trigger, verbose=True)
    assert by_position.id == by_keyword.id == by_handle.id
    assert by_position.task_name == "report"
    assert by_position.args == ("mon",)
    assert by_position.kwargs == {"verbose": True}


def test_schedule_id_is_the_same_in_every_process() -> None:
    # Replicas build their triggers separately; the id must not depend on object identity or
    # on an IntervalTrigger's per-process start.
    first = Schedule.derive_id("report", IntervalTrigger(seconds=5, timezone="UTC"), (), {}, None)
    second = Schedule.derive_id("report", IntervalTrigger(seconds=5, timezone="UTC"), (), {}, None)
    assert first == second
    other_zone = Schedule.derive_id(
        "report", CronTrigger(hour=3, timezone="Europe/Paris"), (), {}, None
    )
    utc = Schedule.derive_id("report", CronTrigger(hour=3, timezone="UTC"), (), {}, None)
    assert other_zone != utc


def test_unknown_task_is_a_typed_error_naming_it(timer: SyncTimer | AsyncTimer) -> None:
    with pytest.raises(UnknownTaskError, match="'nope'") as info:
        timer.add_task("nope", trigger=CronTrigger(second="*"))
    assert isinstance(info.value, KeyError)  # the same type app.add_task raises
    assert "report" in str(info.value)


def test_an_app_without_tasks_or_allowing_unknown_ones_accepts_any_name() -> None:
    producer = QueueTasks(name="timer-add", broker_url="memory://add-producer")
    # Every app merges @shared_task registrations made anywhere in the process (other tests'
    # too); this one stands for a producer that registers nothing.
    producer.tasks.clear()
    SyncTimer(producer).add_task("defined.elsewhere", trigger=CronTrigger(second="*"))
    app = make_app()
    app.config.enqueue_unknown_tasks = True
    SyncTimer(app).add_task("defined.elsewhere", trigger=CronTrigger(second="*"))


@pytest.mark.parametrize("trigger", ["cron", {"second": "*"}, 10, lambda: None])
def test_a_trigger_that_is_not_an_apscheduler_trigger_is_rejected(
    timer: SyncTimer | AsyncTimer, trigger: object
) -> None:
    with pytest.raises(InvalidTriggerError, match=r"APScheduler 3\.x trigger") as info:
        timer.add_task("report", trigger=trigger)
    assert isinstance(info.value, TypeError)


def test_a_missing_trigger_is_rejected(timer: SyncTimer | AsyncTimer) -> None:
    with pytest.raises(InvalidTriggerError, match="needs trigger="):
        timer.add_task("report")


def test_jitter_is_rejected_because_replicas_could_not_agree(
    timer: SyncTimer | AsyncTimer,
) -> None:
    with pytest.raises(InvalidTriggerError, match="jitter"):
        timer.add_task("report", trigger=CronTrigger(second="*", jitter=2))


def test_arguments_the_task_does_not_take_and_bad_options_are_rejected_now(
    timer: SyncTimer | AsyncTimer,
) -> None:
    with pytest.raises(TaskArgumentsError):
        timer.add_task("report", "mon", "tue", "wed", trigger=CronTrigger(second="*"))
    with pytest.raises(TaskArgumentsError):
        timer.add_task("report", trigger=CronTrigger(second="*"), colour="red")

    with pytest.raises(TaskOptionError, match="priority must be an int, not str"):
        timer.add_task("report", trigger=CronTrigger(second="*"), priority="1")
    with pytest.raises(TaskOptionError, match="schedule_id must be a non-empty str"):
        timer.add_task("report", trigger=CronTrigger(second="*"), schedule_id=5)
    with pytest.raises(TaskOptionError, match="coalesce must be a bool"):
        timer.add_task("report", trigger=CronTrigger(second="*"), coalesce="no")
    with pytest.raises(TaskOptionError, match="verbose given both as keywords and in task_kwargs"):
        timer.add_task(
            "report", trigger=CronTrigger(second="*"), verbose=True, task_kwargs={"verbose": 1}
        )
    with pytest.raises(TaskOptionError, match="task_kwargs must be a dict of str keys"):
        timer.add_task("report", trigger=CronTrigger(second="*"), task_kwargs=[("verbose", 1)])
    with pytest.raises(TaskArgumentsError):  # checked like any keyword
        timer.add_task("report", trigger=CronTrigger(second="*"), task_kwargs={"priority": 1})
    assert timer._schedules == {}


def test_missing_or_bad_names_and_grace_times(timer: SyncTimer | AsyncTimer) -> None:
    with pytest.raises(TypeError, match="needs the task's name"):
        timer.add_task(trigger=CronTrigger(second="*"))
    with pytest.raises(TypeError, match="non-empty str"):
        timer.add_task(42, trigger=CronTrigger(second="*"))
    for grace in (0, -1, "60", True):
        with pytest.raises(ValueError, match="misfire_grace_time"):
            timer.add_task("report", trigger=CronTrigger(second="*"), misfire_grace_time=grace)


def test_the_same_schedule_twice_needs_its_own_id(timer: SyncTimer | AsyncTimer) -> None:
    trigger = CronTrigger(second="*")
    timer.add_task("report", trigger=trigger)
    with pytest.raises(DuplicateScheduleError, match="schedule_id="):
        timer.add_task("report", trigger=trigger)
    second = timer.add_task("report", trigger=trigger, schedule_id="report-again")
    assert second.id == "report-again"


def test_interval_ticks_of_replicas_with_different_starts_share_slots() -> None:
    # Two replicas that built IntervalTrigger(seconds=10) 3.2 s apart fire at different
    # offsets; each interval slot must still be one claim.
    base = datetime(2030, 1, 1, tzinfo=timezone.utc)
    early = IntervalTrigger(seconds=10, start_date=base + timedelta(seconds=1.5))
    late = IntervalTrigger(seconds=10, start_date=base + timedelta(seconds=4.7))
    early_slots = [tick_slot(early, base + timedelta(seconds=1.5 + 10 * k)) for k in range(5)]
    late_slots = [tick_slot(late, base + timedelta(seconds=4.7 + 10 * k)) for k in range(5)]
    assert early_slots == late_slots
    assert len(set(early_slots)) == 5
    # A start aligned on the grid, with APScheduler's float rounding either way, is stable.
    aligned = IntervalTrigger(seconds=1, start_date=base)
    wobble = [base + timedelta(seconds=k, microseconds=(-1) ** k) for k in range(1, 6)]
    assert len({tick_slot(aligned, moment) for moment in wobble}) == 5


def test_cron_and_date_ticks_are_keyed_by_their_instant() -> None:
    moment = datetime(2030, 1, 1, 12, 0, 5, tzinfo=timezone.utc)
    assert tick_slot(CronTrigger(second="*"), moment) == tick_slot(
        CronTrigger(second="*/5"), moment
    )
    assert tick_slot(DateTrigger(moment), moment) != tick_slot(
        DateTrigger(moment), moment + timedelta(microseconds=1)
    )


def test_arguments_that_cannot_be_sent_are_refused_at_add_task(
    timer: SyncTimer | AsyncTimer,
) -> None:
    # Before, each was accepted and every tick then failed to enqueue.
    with pytest.raises(SerializationError):
        timer.add_task("report", {"a", "b"}, trigger=IntervalTrigger(seconds=60))
    with pytest.raises(PayloadTooLargeError):
        timer.add_task("report", "x" * 2_000_000, trigger=IntervalTrigger(seconds=60))
