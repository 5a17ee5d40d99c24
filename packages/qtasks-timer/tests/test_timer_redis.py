"""Timers beside a worker on qtasks-redis, in both flavours (skipped without qtasks-redis)."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.triggers.interval import IntervalTrigger

import qtasks.asyncio
from qtasks import QueueTasks, _discovery
from qtasks.timer import SCHEDULES, AsyncTimer, ScheduleStatus, SyncTimer

pytestmark = pytest.mark.skipif(
    not _discovery.has_scheme("qtasks.brokers", "redis"),
    reason="qtasks-redis (redis:// broker) not installed",
)


def fast() -> IntervalTrigger:
    return IntervalTrigger(
        seconds=0.2, start_date=datetime.now(timezone.utc) + timedelta(seconds=0.2)
    )


async def test_async_timer_beside_an_async_redis_worker(redis_url: str) -> None:
    app = qtasks.asyncio.QueueTasks(name="timer-redis", broker_url=redis_url)
    done = asyncio.Queue[int]()

    @app.task(name="square")
    async def square(x: int) -> int:
        await done.put(x)
        return x * x

    timer = AsyncTimer(app)
    schedule = timer.add_task("square", 3, trigger=fast())
    async with app, timer:
        got = [await asyncio.wait_for(done.get(), 5) for _ in range(3)]
        (status,) = await timer.schedules()
    assert got == [3, 3, 3]
    record = await app.get(status.last_task_uuid)
    assert record is not None and record.extra["timer_schedule"] == schedule.id
    # What a web view reads from Redis, without the timer.
    reader = QueueTasks(name="timer-redis", broker_url=redis_url)
    stored = reader.broker.storage.global_config.get_all(SCHEDULES)
    assert ScheduleStatus.from_record(stored[schedule.id]).last_task_uuid is not None


def test_sync_timer_beside_a_sync_redis_worker(redis_url: str) -> None:
    app = QueueTasks(name="timer-redis", broker_url=redis_url)
    ran = threading.Semaphore(0)

    @app.task(name="square")
    def square(x: int) -> int:
        ran.release()
        return x * x

    timer = SyncTimer(app)
    timer.add_task("square", x=4, trigger=fast())
    with app, timer:
        assert all(ran.acquire(timeout=5) for _ in range(3))
        (status,) = timer.schedules()
    record = app.get(status.last_task_uuid)
    assert record is not None and record.kwargs == {"x": 4}


async def test_sync_timer_beside_an_async_redis_worker(redis_url: str) -> None:
    # The README's "either timer works with either app flavour": the SyncTimer drives the
    # asyncio app from its own loop thread. Before, the app's client belonged to the app's loop
    # and the timer's first call failed ("attached to a different loop").
    app = qtasks.asyncio.QueueTasks(name="timer-redis-mixed", broker_url=redis_url)
    ran = threading.Event()

    @app.task(name="tick")
    async def tick() -> None:
        ran.set()

    timer = SyncTimer(app)
    timer.add_task("tick", trigger=fast())
    async with app:
        with timer:
            assert await asyncio.to_thread(ran.wait, 5)
    assert [s.last_run is not None for s in timer.schedules()] == [True]  # after its stop
