"""`AsyncPeriodic`: the asyncio worker's heartbeat, reaper and status loops."""

from __future__ import annotations

import asyncio

from qtasks._periodic import AsyncPeriodic


async def test_stop_ends_a_loop_whose_function_swallowed_the_cancel() -> None:
    # What Python 3.11's `asyncio.wait_for` (inside redis-py's writes) does when the cancel
    # and the inner write's end fall in the same loop turn: the cancel is lost. The reaper
    # then looped on, and the worker's stop waited for it for good (chaos B4, redis-py 7.4).
    entered = asyncio.Event()
    calls = 0

    async def swallows() -> None:
        nonlocal calls
        calls += 1
        entered.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()  # as wait_for leaves it: the cancel is gone

    periodic = AsyncPeriodic("swallows", lambda: 0.01, swallows)
    periodic.start()
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.ensure_future(periodic.stop())
    # `asyncio.wait` does not cancel it: a stop that hangs fails here instead of hanging.
    await asyncio.wait({stopping}, timeout=5)
    assert stopping.done(), "stop hung on a loop whose cancel was lost"
    assert calls == 1  # the loop did not run its function again


async def test_a_stopped_loop_runs_again_after_a_start() -> None:
    ticks: list[int] = []
    twice = asyncio.Event()

    async def tick() -> None:
        ticks.append(1)
        if len(ticks) >= 2:
            twice.set()

    periodic = AsyncPeriodic("tick", lambda: 0.01, tick)
    periodic.start()
    await periodic.stop()
    ticks.clear()
    periodic.start()
    await asyncio.wait_for(twice.wait(), 5)
    await periodic.stop()
