"""Execution slots of the asyncio worker: a slot is for running a task's body, not for waiting
on its final write (`BaseWorker.frees_slot_before_final_write`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from qtasks import hookimpl
from qtasks.testing.harness import Harness


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness("async")
    yield h
    if h.app.starter.started:
        await h.stop(0)


async def test_the_next_task_starts_while_the_previous_final_write_is_pending(
    harness: Harness,
) -> None:
    harness.app.config.max_tasks_process = 1
    second_ran = asyncio.Event()
    seen: list[bool] = []

    class HoldFirstWrite:
        """Holds task 1 between its body and its final write until task 2 has run."""

        @hookimpl
        async def worker_remove_finished_task(self, task_broker: Any) -> None:
            if list(task_broker.args) == [1]:
                await asyncio.wait([asyncio.ensure_future(second_ran.wait())], timeout=5)
                seen.append(second_ran.is_set())

    harness.app.add_plugin(HoldFirstWrite())

    @harness.task(name="step")
    async def step(n: int) -> int:
        if n == 2:
            second_ran.set()
        return n

    first = await harness.add_task("step", 1)
    second = await harness.add_task("step", 2)
    await harness.start()
    assert (await harness.call("wait", first.uuid, 10)).returning == 1
    assert (await harness.call("wait", second.uuid, 10)).returning == 2
    # With one slot, task 2 ran while task 1's write was held: the slot was already free.
    assert seen == [True]


async def test_a_held_final_write_still_counts_against_capacity(harness: Harness) -> None:
    harness.app.config.max_tasks_process = 1
    harness.app.config.prefetch = 0
    release = asyncio.Event()
    bodies: list[int] = []

    class HoldWrites:
        @hookimpl
        async def worker_remove_finished_task(self, task_broker: Any) -> None:
            await asyncio.wait_for(release.wait(), 5)

    harness.app.add_plugin(HoldWrites())

    @harness.task(name="step")
    async def step(n: int) -> int:
        bodies.append(n)
        return n

    tasks = [await harness.add_task("step", n) for n in range(3)]
    await harness.start()
    worker = harness.app.worker
    while not bodies:
        await asyncio.sleep(0.01)
    # Task 0's body is done and its write held: its lease is still held, so with no prefetch
    # the worker claims nothing more, and nothing else runs.
    await asyncio.sleep(0.2)
    assert bodies == [0]
    assert worker.capacity() == 0
    release.set()
    for task in tasks:
        assert (await harness.call("wait", task.uuid, 10)).status == "success"
    assert sorted(bodies) == [0, 1, 2]
