"""Edges of a task's life on both app flavours (see conftest.Harness): a body's
`BaseException`, a worker started again after a stop, cancels that meet a retry or a stop."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest

from qtasks import hookimpl
from qtasks.testing.harness import Harness, wait_event

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


async def test_a_task_cancelled_in_the_prefetch_buffer_is_not_handed_back_at_stop(
    harness: Harness,
) -> None:
    harness.app.config.max_tasks_process = 1
    harness.app.config.prefetch = 2
    gate, started = threading.Event(), threading.Event()
    ran: list[str] = []

    @harness.task(name="blocker")
    def blocker() -> None:
        started.set()
        gate.wait(5)

    @harness.task(name="later")
    def later() -> None:
        ran.append("later")

    await harness.add_task("blocker")
    buffered = await harness.add_task("later")
    await harness.start()
    await wait_event(started)  # the slot is busy: "later" waits in the buffer, leased
    assert await harness.call("cancel", buffered.uuid, "not needed") == "signalled"
    gate.set()
    await harness.stop()
    record = await harness.call("get", buffered.uuid)
    # Before: handed back as `new`, and the next worker ran it.
    assert record.status == "cancel" and record.cancel_reason == "not needed"
    await harness.start()
    marker = await harness.add_task("later", timeout=5)
    assert marker.status == "success" and ran == ["later"]  # the marker's run only


async def test_a_running_task_cancelled_then_stopped_past_the_grace_is_cancelled(
    harness: Harness,
) -> None:
    started, release = threading.Event(), threading.Event()
    harness.cleanups.append(release.set)
    runs: list[int] = []

    @harness.task(name="stubborn")
    def stubborn() -> str:
        runs.append(1)
        started.set()
        release.wait(10)  # a sync body cannot be stopped
        return "late"

    task = await harness.add_task("stubborn")
    await harness.start()
    await wait_event(started)
    assert await harness.call("cancel", task.uuid, "stop it") == "signalled"
    await harness.stop(0.2)  # the body is still running: its task is handed back...
    record = await harness.call("get", task.uuid)
    assert record.status == "cancel" and record.cancel_reason == "stop it"  # ...as cancelled
    release.set()
    await harness.start()
    assert (await harness.call("wait", task.uuid, 1)).status == "cancel"
    assert runs == [1]


async def test_echo_context_follows_the_functions_flavour(harness: Harness) -> None:
    """A sync echo task on the asyncio app and an async one on the sync app (both run on pool
    threads): `self.ctx` waits as the function does, and a task handle's `add_task` enqueues."""
    seen: dict[str, object] = {}

    @harness.task(name="child")
    def child(n: int) -> int:
        return n + 1

    @harness.task(name="sync_echo", echo=True)
    def sync_echo(self: Any) -> str:
        slept = self.ctx.sleep(0.01)  # before: an un-awaited coroutine on the asyncio app
        own = self.ctx.get_metadata()
        queued = child.add_task(41)  # before: a coroutine on the asyncio app, never enqueued
        seen["sync"] = (slept, own.status, queued.status)
        return str(queued.uuid)

    @harness.task(name="async_echo", echo=True)
    async def async_echo(self: Any) -> str:
        await self.ctx.sleep(0.01)  # before: a TypeError on the sync app
        own = await self.ctx.get_metadata()
        seen["async"] = own.status
        return "ok"

    await harness.start()
    final = await harness.add_task("sync_echo", timeout=5)
    assert final.status == "success", final.traceback
    assert seen["sync"] == (None, "process", "new")
    child_final = await harness.call("wait", final.returning, 5)
    assert child_final.status == "success" and child_final.returning == 42
    final = await harness.add_task("async_echo", timeout=5)
    assert final.status == "success", final.traceback
    assert seen["async"] == "process"


async def test_sync_bodies_that_overran_do_not_time_out_the_tasks_after_them(
    harness: Harness,
) -> None:
    harness.app.config.max_tasks_process = 2
    release = threading.Event()
    harness.cleanups.append(release.set)

    @harness.task(name="overrun", max_time=0.1)
    def overrun() -> None:
        release.wait(10)  # runs on after its timeout: a thread cannot be stopped

    @harness.task(name="quick", max_time=1)
    def quick() -> str:
        return "on time"

    await harness.start()
    for _ in range(2):  # as many as the slots
        final = await harness.add_task("overrun", timeout=5)
        assert final.status == "error" and "TaskTimeoutError" in final.traceback
    # Before, on the asyncio app: both pool threads were held by the overruns, so "quick"
    # waited for one past its own max_time and never ran.
    final = await harness.add_task("quick", timeout=5)
    assert final.status == "success" and final.returning == "on time"


async def test_a_cancel_between_a_claim_and_its_hand_over_is_not_lost(harness: Harness) -> None:
    """A cancel that comes while the claim loop holds a claimed task it has not handed to the
    worker yet: before, the worker did not know the task and dropped the notice, the task
    ran, and its final write cleared the broker's cancel flag."""
    claimed, cancelled = threading.Event(), asyncio.Event()
    ran: list[int] = []

    @harness.task(name="later")
    def later() -> None:
        ran.append(1)

    class HoldTheHandOver:
        # `worker_add` fires between the claim's reply and the hand-over.
        if harness.kind == "async":

            @hookimpl
            async def worker_add(self, task_name: str) -> None:
                claimed.set()
                await cancelled.wait()
        else:

            @hookimpl
            def worker_add(self, task_name: str) -> None:
                claimed.set()
                assert done_cancel.wait(5)

    done_cancel = threading.Event()
    harness.app.add_plugin(HoldTheHandOver())
    task = await harness.add_task("later")
    await harness.start()
    await wait_event(claimed)
    assert await harness.call("cancel", task.uuid, "too late?") == "signalled"
    cancelled.set()
    done_cancel.set()
    final = await harness.call("wait", task.uuid, 5)
    assert final.status == "cancel" and final.cancel_reason == "too late?" and ran == []


async def test_retrying_a_failed_record_twice_runs_it_once_more(harness: Harness) -> None:
    runs: list[int] = []

    @harness.task(name="flaky")
    def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("first run fails")

    await harness.start()
    failed = await harness.add_task("flaky", timeout=5)
    assert failed.status == "error"
    first = await harness.call("retry", failed.uuid)
    second = await harness.call("retry", failed.uuid)  # a double click, a second operator
    # Before: two new tasks, two more runs.
    assert first.uuid == second.uuid
    assert (await harness.call("wait", first.uuid, 5)).status == "success"
    assert (await harness.call("retry", failed.uuid)).uuid == first.uuid
    assert (await harness.call("get", first.uuid)).status == "success"  # not enqueued again
    assert len(runs) == 2


async def test_a_retried_record_is_enqueued_like_any_task(harness: Harness) -> None:
    runs: list[int] = []
    sent: list[tuple[str, dict[str, Any]]] = []

    class Tracer:
        @hookimpl
        def qtasks_add_task_before_broker(
            self, task_name: str, extra: dict[str, Any], headers: dict[str, str]
        ) -> dict[str, Any]:
            sent.append((task_name, dict(extra)))
            return {"headers": {**headers, "trace": str(len(sent))}}

    @harness.task(name="flaky", retry=1, retry_backoff=0)
    def flaky() -> None:
        runs.append(1)
        raise ValueError("fails every time")

    harness.app.add_plugin(Tracer())
    await harness.start()
    failed = await harness.call("wait", (await harness.add_task("flaky")).uuid, 5)
    assert failed.status == "error" and len(runs) == 2
    again = await harness.call("retry", failed.uuid)
    # Before: the re-run skipped the enqueue triggers (no send span, no trace headers).
    assert sent == [("flaky", {}), ("flaky", {"retried_from": str(failed.uuid)})]
    assert (await harness.call("wait", again.uuid, 5)).status == "error"
    assert len(runs) == 4


async def test_cancelled_and_purged_records_expire_like_finished_ones(harness: Harness) -> None:
    # The in-memory store kept them for good (Redis gives them `result_ttl`).
    harness.app.config.result_ttl = 0.2

    @harness.task(name="never")
    def never() -> None:
        return None

    cancelled = await harness.add_task("never")
    purged = await harness.add_task("never")
    assert await harness.call("cancel", cancelled.uuid) == "cancelled"
    assert await harness.call_on(harness.app.broker, "purge_queue", "default") == 1
    assert (await harness.call("get", purged.uuid)).status == "cancel"
    deadline = asyncio.get_running_loop().time() + 5
    while await harness.call("get", cancelled.uuid) or await harness.call("get", purged.uuid):
        assert asyncio.get_running_loop().time() < deadline, "records did not expire"
        await asyncio.sleep(0.05)


async def test_a_dead_letter_whose_record_expired_stays_when_its_retry_fails(
    harness: Harness,
) -> None:
    from qtasks import QueueTasks

    harness.app.config.result_ttl = 0.2
    name = harness.app.name
    producer = QueueTasks(name=name, broker_url=f"memory://{name}")  # the same store

    @producer.task(name="elsewhere")
    def elsewhere() -> None:
        return None

    task = producer.add_task("elsewhere")  # this worker does not know it: dead-lettered
    await harness.start()
    deadline = asyncio.get_running_loop().time() + 5
    while await harness.call("get", task.uuid) is not None:  # dead-lettered, then expired
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    broker = harness.app.broker
    assert [e.uuid for e in await harness.call_on(broker, "list_dead")] == [str(task.uuid)]
    assert await harness.call_on(broker, "retry_dead", str(task.uuid)) is False
    # Before, the in-memory store dropped the dead letter anyway (Redis keeps it).
    assert [e.uuid for e in await harness.call_on(broker, "list_dead")] == [str(task.uuid)]
