"""Edges of a task's life on Redis (the memory broker's are in qtasks-core's
test_worker_edges.py): a body's `BaseException`, a worker started again after a stop, cancels
that meet a retry or a stop."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import pytest
from redis_test_support import async_app, sync_app


def _app(redis_url: str) -> Any:
    app = async_app(redis_url, block_timeout=0.5)

    @app.task(name="echo")
    def echo(n: int) -> int:
        return n

    @app.task(name="exits")
    def exits() -> None:
        raise SystemExit(3)

    return app


async def test_the_asyncio_worker_runs_tasks_again_after_a_stop(redis_url: str) -> None:
    app = _app(redis_url)
    for round_ in range(3):
        await app.start()
        final = await app.add_task("echo", round_, timeout=5)
        assert final is not None and final.returning == round_, round_
        await app.stop()


async def test_a_body_exit_is_the_tasks_error(redis_url: str) -> None:
    app = _app(redis_url)
    await app.start()
    try:
        final = await app.add_task("exits", timeout=5)
        assert final is not None and final.status == "error"
        assert "TaskExitError" in final.traceback and "SystemExit: 3" in final.traceback
    finally:
        await app.stop()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 cannot tell whose cancel it was")
async def test_a_cancelled_inner_task_is_the_tasks_error_not_a_hand_back(redis_url: str) -> None:
    app = _app(redis_url)
    runs: list[int] = []

    @app.task(name="inner_cancelled")
    async def inner_cancelled() -> None:
        runs.append(1)
        inner = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        inner.cancel()
        await inner

    await app.start()
    try:
        final = await app.add_task("inner_cancelled", timeout=5)
        assert final is not None and final.status == "error" and runs == [1]
    finally:
        await app.stop()


async def test_cancel_of_an_attempt_waiting_for_its_retry_cancels_the_retry(
    redis_url: str,
) -> None:
    app = _app(redis_url)
    runs: list[int] = []

    @app.task(name="flaky", retry=2, retry_backoff=30)
    def flaky() -> None:
        runs.append(1)
        raise ValueError("first attempt fails")

    await app.start()
    try:
        first = await app.add_task("flaky")
        deadline = asyncio.get_running_loop().time() + 5
        while (await app.get(first.uuid)).status != "retry":
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert await app.cancel(first.uuid, "give up") == "cancelled"  # the delayed retry
        final = await app.wait(first.uuid, 5)
        assert final.status == "cancel" and final.cancel_reason == "give up" and runs == [1]
    finally:
        await app.stop()


def test_cancelled_tasks_held_by_a_stopping_worker_are_not_handed_back(redis_url: str) -> None:
    # The sync app: a running sync body cannot be stopped, so the stop hands it back.
    app = sync_app(redis_url, block_timeout=0.5, max_tasks_process=1, prefetch=2)
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    @app.task(name="stubborn")
    def stubborn() -> None:
        runs.append("stubborn")
        started.set()
        release.wait(10)

    @app.task(name="later")
    def later() -> None:
        runs.append("later")

    running = app.add_task("stubborn")
    buffered = app.add_task("later")
    app.start()
    try:
        assert started.wait(5)
        assert app.cancel(running.uuid, "stop it") == "signalled"
        assert app.cancel(buffered.uuid, None) == "signalled"  # leased, in the buffer
        app.stop(0.2)
    finally:
        release.set()
    # Before: both went back to the queue as `new` and the next worker ran them.
    assert app.get(running.uuid).status == "cancel"
    assert app.get(running.uuid).cancel_reason == "stop it"
    assert app.get(buffered.uuid).status == "cancel"
    app.start()
    try:
        assert app.add_task("later", timeout=5).status == "success"
    finally:
        app.stop()
    assert runs == ["stubborn", "later"]  # the second "later" is the marker


def test_an_asyncio_app_serves_one_event_loop_after_another(redis_url: str) -> None:
    # asyncio.run per call, as scripts and notebooks do: each loop gets its own connections
    # (before, the second call failed: "Event loop is closed").
    app = async_app(redis_url)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    first = asyncio.run(app.add_task("noop"))
    second = asyncio.run(app.add_task("noop"))
    assert asyncio.run(app.get(first.uuid)).status == "new"
    assert asyncio.run(app.get(second.uuid)).status == "new"


async def test_delayed_tasks_start_on_time_not_a_redis_tick_late(redis_url: str) -> None:
    # Redis ends a BLPOP's timeout on its timer (10 times a second): a worker that blocked
    # until a task's eta started it 0-100 ms late (50 ms on average).
    app = _app(redis_url)
    lateness: list[float] = []

    @app.task(name="due")
    def due(at: float) -> None:
        lateness.append(time.time() - at)

    await app.start()
    try:
        for step in range(5):
            at = time.time() + 0.25 + 0.04 * step
            task = await app.enqueue("due", (at,), eta=at)
            assert (await app.wait(task.uuid, 5)).status == "success"
    finally:
        await app.stop()
    assert all(-0.005 < late < 0.06 for late in lateness), lateness


async def test_retrying_a_failed_record_twice_enqueues_once(redis_url: str) -> None:
    app = _app(redis_url)
    await app.start()
    try:
        failed = await app.add_task("exits", timeout=5)
        assert failed.status == "error"
        first, second = await app.retry(failed.uuid), await app.retry(failed.uuid)
        assert first.uuid == second.uuid  # before: two tasks
        assert (await app.wait(first.uuid, 5)).status == "error"
        assert (await app.retry(failed.uuid)).uuid == first.uuid
        assert (await app.get(first.uuid)).status == "error"  # not enqueued again
    finally:
        await app.stop()
