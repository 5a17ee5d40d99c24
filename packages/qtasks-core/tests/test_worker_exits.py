"""What a body's `BaseException` does to its task, and a worker started again after a stop,
on both app flavours (see conftest.Harness)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from qtasks.testing.harness import Harness

needs_cancelling = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Python 3.10 cannot tell whose cancel ended a body"
)


async def test_system_exit_and_keyboard_interrupt_from_a_body_end_the_task(
    harness: Harness,
) -> None:
    runs: list[str] = []

    @harness.task(name="exits")
    def exits() -> None:
        runs.append("exits")
        raise SystemExit(3)

    @harness.task(name="interrupted")
    def interrupted() -> None:
        runs.append("interrupted")
        raise KeyboardInterrupt

    @harness.task(name="ok")
    def ok() -> str:
        return "still working"

    await harness.start()
    for name, raised in (("exits", "SystemExit: 3"), ("interrupted", "KeyboardInterrupt")):
        final = await harness.add_task(name, timeout=5)
        assert final is not None, name  # before: no final record, the task ran again later
        assert final.status == "error", name
        assert "TaskExitError" in final.traceback and raised in final.traceback, name
    assert runs == ["exits", "interrupted"]
    assert (await harness.add_task("ok", timeout=5)).returning == "still working"


async def test_a_body_exit_is_retried_by_retry_on_exc(harness: Harness) -> None:
    runs: list[int] = []

    @harness.task(name="exits", retry=1, retry_on_exc=(SystemExit,))
    def exits() -> None:
        runs.append(1)
        raise SystemExit("bye")

    await harness.start()
    final = await harness.add_task("exits", timeout=5)
    assert final.status == "error" and "SystemExit: bye" in final.traceback
    assert len(runs) == 2


async def test_an_async_body_on_the_sync_app_that_raises_system_exit(harness: Harness) -> None:
    if harness.kind == "async":
        # On the event loop's own thread SystemExit stops the process, as in any asyncio
        # program (docs/architecture.md); only a pool thread's loop can record it.
        pytest.skip("the sync app runs async bodies on its pool threads")

    @harness.task(name="aexits")
    async def aexits() -> None:
        raise SystemExit(4)

    await harness.start()
    final = await harness.add_task("aexits", timeout=5)
    assert final.status == "error" and "SystemExit: 4" in final.traceback


@needs_cancelling
async def test_a_cancelled_inner_task_ends_the_body_as_an_error(harness: Harness) -> None:
    runs: list[int] = []

    @harness.task(name="inner_cancelled")
    async def inner_cancelled() -> None:
        runs.append(1)
        inner = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        inner.cancel()
        await inner  # raises CancelledError into a body nobody cancelled

    await harness.start()
    final = await harness.add_task("inner_cancelled", timeout=5)
    # Before: handed back as if the worker were stopping, claimed again, thousands of runs.
    assert final is not None and final.status == "error"
    assert "TaskExitError" in final.traceback and "CancelledError" in final.traceback
    assert runs == [1]


async def test_a_worker_runs_tasks_again_after_a_stop(harness: Harness) -> None:
    @harness.task(name="echo")
    def echo(n: int) -> int:
        return n

    for round_ in range(3):
        await harness.start()
        final = await harness.add_task("echo", round_, timeout=5)
        # Before: the asyncio worker's second start claimed nothing (a stop cancelled a claim
        # whose reserved capacity was never given back).
        assert final is not None and final.returning == round_, round_
        await harness.stop()


async def test_cancel_of_an_attempt_waiting_for_its_retry_cancels_the_retry(
    harness: Harness,
) -> None:
    runs: list[int] = []

    @harness.task(name="flaky", retry=2, retry_backoff=30)
    def flaky() -> None:
        runs.append(1)
        raise ValueError("first attempt fails")

    await harness.start()
    first = await harness.add_task("flaky")
    deadline = asyncio.get_running_loop().time() + 5
    record = await harness.call("get", first.uuid)
    while record.status != "retry":  # the attempt's final write, then its retry is queued
        assert asyncio.get_running_loop().time() < deadline, record.status
        await asyncio.sleep(0.01)
        record = await harness.call("get", first.uuid)
    # Before: 'final', and the retry ran 30 s later.
    assert await harness.call("cancel", first.uuid, "give up") == "cancelled"
    final = await harness.call("wait", first.uuid, 5)
    assert final.status == "cancel" and final.cancel_reason == "give up"
    assert final.uuid != first.uuid and runs == [1]
