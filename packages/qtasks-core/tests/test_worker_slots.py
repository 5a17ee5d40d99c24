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


async def test_tasks_waiting_on_their_final_write_are_bounded(harness: Harness) -> None:
    """A task past its body frees its slot for a claim, but at most `max_tasks_process +
    prefetch` such tasks are held: the worker stops claiming while that many writes hang."""
    harness.app.config.max_tasks_process = 1
    harness.app.config.prefetch = 0
    release = asyncio.Event()
    bodies: list[int] = []
    body_ran = asyncio.Event()

    class HoldWrites:
        @hookimpl
        async def worker_remove_finished_task(self, task_broker: Any) -> None:
            await asyncio.wait_for(release.wait(), 5)

    harness.app.add_plugin(HoldWrites())

    @harness.task(name="step")
    async def step(n: int) -> int:
        bodies.append(n)
        body_ran.set()
        return n

    tasks = [await harness.add_task("step", n) for n in range(4)]
    await harness.start()
    worker = harness.app.worker
    while len(bodies) < 2:
        body_ran.clear()
        await asyncio.wait_for(body_ran.wait(), 5)
    # Two bodies done, both writes held: two leases, the bound for a limit of one.
    assert worker.capacity() == 0
    assert len(worker.in_flight()) == 2
    await asyncio.sleep(0.2)  # nothing else may start meanwhile
    assert sorted(bodies) == [0, 1]
    release.set()
    for task in tasks:
        assert (await harness.call("wait", task.uuid, 10)).status == "success"
    assert sorted(bodies) == [0, 1, 2, 3]


async def test_a_body_that_swallows_its_cancel_finishes_with_its_result(harness: Harness) -> None:
    # The cancel is sent into the task's own asyncio task; one the body catches must not leak
    # into the rest of the execution (the final write) or into later tasks.
    started = asyncio.Event()

    @harness.task(name="stubborn")
    async def stubborn() -> int:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return 7
        return 0

    @harness.task(name="timed")
    async def timed() -> str:
        await asyncio.wait_for(asyncio.sleep(0.01), 1)
        return "ok"

    await harness.start()
    task = await harness.add_task("stubborn")
    await asyncio.wait_for(started.wait(), 5)
    await harness.call("cancel", task.uuid)
    done = await harness.call("wait", task.uuid, 5)
    assert (done.status, done.returning) == ("success", 7)
    assert (await harness.add_task("timed", timeout=5)).returning == "ok"


async def test_a_task_starts_from_the_workers_context_not_the_one_before_it(
    harness: Harness,
) -> None:
    """The next task is started from inside the task that freed its slot; it must still see
    the worker's context variables, not the ones that task (or a plugin around it) set."""
    import contextvars

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="clean")
    harness.app.config.max_tasks_process = 1
    seen: list[tuple[int, str]] = []

    @harness.task(name="mark")
    async def mark(n: int) -> int:
        seen.append((n, marker.get()))
        marker.set(f"left by {n}")
        return n

    tasks = [await harness.add_task("mark", n) for n in range(4)]
    await harness.start()
    for task in tasks:
        assert (await harness.call("wait", task.uuid, 10)) is not None
    assert sorted(seen) == [(n, "clean") for n in range(4)]
