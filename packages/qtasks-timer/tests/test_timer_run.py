"""Timers running beside a worker in one process, with the in-memory app (both flavours)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

import qtasks.asyncio
from qtasks import QueueTasks
from qtasks.plugins import BasePlugin
from qtasks.timer import SCHEDULES, AsyncTimer, ScheduleStatus, SyncTimer
from qtasks.timer.triggers import tick_slot

FAST = 0.2


def fast_trigger(offset: float = 0.0) -> IntervalTrigger:
    start = datetime.now(timezone.utc) + timedelta(seconds=FAST + offset)
    return IntervalTrigger(seconds=FAST, start_date=start)


def test_sync_timer_runs_beside_a_sync_worker(store_url: str, ledger: Any) -> None:
    app = QueueTasks(name="timer-run", broker_url=store_url)
    ran = threading.Semaphore(0)
    days: list[str] = []

    @app.task(name="report")
    def report(day: str) -> str:
        days.append(day)
        ran.release()
        return day

    app.add_plugin(ledger, component="timer")
    timer = SyncTimer(app)
    timer.add_task("report", "mon", trigger=fast_trigger())
    with app, timer:
        assert all(ran.acquire(timeout=5) for _ in range(3))
    assert days[:3] == ["mon", "mon", "mon"]
    run_time, task = ledger.enqueued()[-1]
    (status,) = timer.schedules()
    assert status.last_task_uuid == str(task.uuid)
    assert status.last_run == run_time
    assert status.next_run_time is not None and status.next_run_time > run_time
    record = app.get(task.uuid)
    assert record is not None and record.status == "success"


async def test_async_timer_runs_beside_an_async_worker(store_url: str) -> None:
    app = qtasks.asyncio.QueueTasks(name="timer-run", broker_url=store_url)
    done = asyncio.Queue[str]()

    @app.task(name="report")
    async def report(day: str) -> str:
        await done.put(day)
        return day

    timer = AsyncTimer(app)
    timer.add_task("report", day="tue", trigger=fast_trigger())
    async with app, timer:
        got = [await asyncio.wait_for(done.get(), 5) for _ in range(3)]
        (status,) = await timer.schedules()
    assert got == ["tue"] * 3
    assert status.last_task_uuid is not None
    record = await app.get(status.last_task_uuid)
    assert record is not None and record.kwargs == {"day": "tue"}


def test_sync_timer_drives_an_asyncio_app(store_url: str, ledger: Any) -> None:
    app = qtasks.asyncio.QueueTasks(name="timer-run", broker_url=store_url)

    @app.task(name="report")
    async def report() -> None:
        return None

    app.add_plugin(ledger, component="timer")
    with SyncTimer(app) as timer:
        timer.add_task("report", trigger=fast_trigger())  # added while running
        assert ledger.wait_enqueued(2)
        statuses = timer.schedules()
    tasks = [task for _, task in ledger.enqueued()]
    assert {task.status for task in tasks} == {"new"}  # no worker here: enqueued only
    assert statuses[0].last_task_uuid in {str(task.uuid) for task in tasks}


def test_two_timers_in_one_process_enqueue_each_tick_once(store_url: str, ledger: Any) -> None:
    app = QueueTasks(name="timer-run", broker_url=store_url)

    @app.task(name="report")
    def report() -> None:
        return None

    app.add_plugin(ledger, component="timer")
    # Replicas fire at different offsets (0.07 s apart); each 0.2 s slot enqueues once.
    async_timer, sync_timer = AsyncTimer(app), SyncTimer(app)
    async_timer.add_task("report", trigger=fast_trigger())
    sync_timer.add_task("report", trigger=fast_trigger(0.07))
    assert async_timer._schedules.keys() == sync_timer._schedules.keys()
    runner = threading.Thread(target=async_timer.run_forever)  # the seed's way to run it
    runner.start()
    sync_timer.start()
    try:
        assert ledger.wait_enqueued(8)
    finally:
        sync_timer.stop()
        async_timer.request_stop()
        runner.join(5)
    trigger = fast_trigger()
    slots = Counter(tick_slot(trigger, run_time) for run_time, _ in ledger.enqueued())
    assert max(slots.values()) == 1, slots
    numbers = sorted(int(slot.removeprefix("slot")) for slot in slots)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # no tick skipped
    records = app.broker.storage.get_all()
    assert len(records) == len(ledger.enqueued())


def test_an_enqueue_is_an_ordinary_app_enqueue_tagged_with_its_tick(
    store_url: str, ledger: Any
) -> None:
    app = QueueTasks(name="timer-run", broker_url=store_url)
    seen: list[dict[str, Any]] = []

    @app.task(name="report", priority=3)
    def report(day: str, *, timeout: int = 0) -> None:
        return None

    tracer = BasePlugin()
    tracer.handlers = {"qtasks_add_task_before_broker": lambda **kw: seen.append(kw)}
    app.add_plugin(tracer)
    app.add_plugin(ledger, component="timer")
    with SyncTimer(app) as timer:
        # `timeout` is the task's own keyword: it must reach the task, not make the timer wait.
        schedule = timer.add_task("report", "wed", trigger=fast_trigger(), timeout=30)
        assert ledger.wait_enqueued(1)
    run_time, task = ledger.enqueued()[0]
    assert seen[0]["task_name"] == "report" and seen[0]["kw"] == {"timeout": 30}
    record = app.get(task.uuid)
    assert record is not None
    assert record.args == ("wed",) and record.kwargs == {"timeout": 30}
    assert record.priority == 3  # the task's own default, as app.add_task would use
    assert record.extra == {"timer_schedule": schedule.id, "timer_tick": run_time.isoformat()}


def test_task_keywords_named_like_the_timers_own_go_in_task_kwargs(
    store_url: str, ledger: Any
) -> None:
    app = QueueTasks(name="timer-run", broker_url=store_url)

    @app.task(name="alert")
    def alert(level: str, *, priority: str, trigger: str) -> None:
        return None

    app.add_plugin(ledger, component="timer")
    with SyncTimer(app) as timer:
        timer.add_task(
            "alert",
            "warn",
            trigger=fast_trigger(),
            task_kwargs={"priority": "high", "trigger": "x"},
        )
        assert ledger.wait_enqueued(1)
    record = app.get(ledger.enqueued()[0][1].uuid)
    assert record is not None and record.kwargs == {"priority": "high", "trigger": "x"}
    assert record.priority == 0  # the schedule's own priority is the task's default


def test_schedules_are_listed_and_stored_for_stats_and_web_views(
    store_url: str, ledger: Any
) -> None:
    app = QueueTasks(name="timer-run", broker_url=store_url)

    @app.task(name="report")
    def report() -> None:
        return None

    app.add_plugin(ledger, component="timer")
    timer = SyncTimer(app)
    once = datetime.now(timezone.utc) + timedelta(seconds=0.3)
    timer.add_task("report", trigger=DateTrigger(once), schedule_id="once")
    (before,) = timer.schedules()
    assert before.next_run_time == once and before.last_run is None
    with timer:
        assert ledger.wait_enqueued(1)
        (after,) = timer.schedules()
    _, task = ledger.enqueued()[0]
    assert after.last_run == once and after.last_task_uuid == str(task.uuid)
    assert after.next_run_time is None  # a DateTrigger fires once
    stored = app.broker.storage.global_config.get_all(SCHEDULES)
    from_web = ScheduleStatus.from_record(stored["once"])
    assert from_web == after


def test_run_forever_inside_a_running_loop_points_to_serve(store_url: str) -> None:
    app = QueueTasks(name="timer-run", broker_url=store_url)

    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"await timer\.serve"):
            AsyncTimer(app).run_forever()

    asyncio.run(main())
