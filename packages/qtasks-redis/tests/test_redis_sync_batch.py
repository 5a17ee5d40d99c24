"""The thread flavour of the write-behind batcher (`SyncBatcher`) and what the sync worker does
with a freed slot."""

from __future__ import annotations

import contextvars
import threading
from functools import partial
from typing import Any

import pytest
from redis_test_support import sync_app, wait_for

from qtasks import hookimpl
from qtasks._drive import Pending, resume_parked, run_parking
from qtasks.redis import _batch
from qtasks.redis._batch import SUPERSEDED, SyncBatcher


class GatedPipeline:
    """Stands in for the Redis pipeline: records each round trip's items, and holds each
    round trip until the test opens its gate."""

    def __init__(self) -> None:
        self.sent: list[list[Any]] = []
        self.gates: list[threading.Event] = []
        self.entered = threading.Semaphore(0)

    def run(self, items: list[tuple[Any, Any]]) -> list[tuple[bool, Any]]:
        gate = threading.Event()
        self.gates.append(gate)
        self.sent.append([item for _, item in items])
        self.entered.release()
        assert gate.wait(10)
        return [(True, f"ok:{item}") for _, item in items]

    def wait_round(self, number: int) -> None:
        assert self.entered.acquire(timeout=10)
        assert len(self.sent) == number


class CountingLock:
    """A wake-up lock that counts its releases (each one wakes a sleeping caller)."""

    def __init__(self, log: list[str], name: str) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._log, self._name = log, name

    def acquire(self) -> bool:
        return self._lock.acquire()

    def release(self) -> None:
        self._log.append(self._name)
        self._lock.release()


def pack(items: list[Any]) -> Any:  # never called: the pipeline is replaced
    raise AssertionError


@pytest.fixture
def batcher(monkeypatch: pytest.MonkeyPatch) -> tuple[SyncBatcher, GatedPipeline, list[str]]:
    woken: list[str] = []
    made = iter("BCDEFG")
    monkeypatch.setattr(_batch, "_held", lambda: CountingLock(woken, next(made)))
    batcher = SyncBatcher(client=None)
    pipeline = GatedPipeline()
    batcher._pipeline = pipeline  # type: ignore[assignment]
    return batcher, pipeline, woken


def call_in_thread(batcher: SyncBatcher, item: str, out: dict[str, Any]) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.__setitem__(item, batcher.call(pack, item)))
    thread.start()
    return thread


def mark_behind_a_send(
    sync: SyncBatcher, pipeline: GatedPipeline, out: dict[str, Any]
) -> tuple[threading.Thread, Any]:
    """A caller leads round trip 1 ("a"); a `process` mark is sent behind it meanwhile."""
    leader = call_in_thread(sync, "a", out)
    pipeline.wait_round(1)
    mark = sync.behind(pack, "mark", ("mark", "t1"))  # returns while "a" is in flight
    assert not mark.done
    return leader, mark


def test_a_round_trip_wakes_its_callers_and_one_next_leader_only(
    batcher: tuple[SyncBatcher, GatedPipeline, list[str]],
) -> None:
    sync, pipeline, woken = batcher
    out: dict[str, Any] = {}
    threads = [call_in_thread(sync, "a", out)]
    pipeline.wait_round(1)  # "a" leads; the others queue behind its round trip
    for queued, item in enumerate("bcd", 1):
        threads.append(call_in_thread(sync, item, out))
        wait_for(lambda n=queued: len(sync._pending) == n, what="queued callers")
    pipeline.gates[0].set()
    pipeline.wait_round(2)
    # The first round trip carried only "a": it woke exactly one sleeper, to lead the next.
    assert woken == ["B"]
    assert pipeline.sent == [["a"], ["b", "c", "d"]]
    pipeline.gates[1].set()
    for thread in threads:
        thread.join(10)
    assert out == {"a": "ok:a", "b": "ok:b", "c": "ok:c", "d": "ok:d"}
    assert sorted(woken) == ["B", "C", "D"]  # each sleeper woken once


def test_a_write_sent_behind_returns_at_once_and_is_sent_without_a_later_write(
    batcher: tuple[SyncBatcher, GatedPipeline, list[str]],
) -> None:
    sync, pipeline, woken = batcher
    out: dict[str, Any] = {}
    leader, mark = mark_behind_a_send(sync, pipeline, out)
    pipeline.gates[0].set()
    # Nobody else writes (a long task's mark): it is sent on its own once it waited
    # MARK_DELAY for a write to ride with.
    pipeline.wait_round(2)
    assert pipeline.sent[1] == ["mark"]
    pipeline.gates[1].set()
    leader.join(10)
    wait_for(lambda: mark.done, what="the mark's reply")
    assert sync.reply(mark) == "ok:mark"
    assert woken == []  # nobody slept


def test_a_mark_with_nothing_in_flight_waits_for_its_final_write(
    batcher: tuple[SyncBatcher, GatedPipeline, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    sync, pipeline, woken = batcher
    monkeypatch.setattr(_batch, "MARK_DELAY", 30.0)  # the task ends well within it
    mark = sync.behind(pack, "mark", ("mark", "t1"))  # the task starts; no round trip runs
    assert pipeline.sent == [] and not mark.done  # held, not sent on its own
    out: dict[str, Any] = {}
    final = threading.Thread(
        target=lambda: out.__setitem__("final", sync.call(pack, "final", ("final", "t1")))
    )
    final.start()
    pipeline.wait_round(1)
    pipeline.gates[0].set()
    final.join(10)
    # One round trip for the task: its final record, which replaces the mark.
    assert pipeline.sent == [["final"]]
    assert sync.reply(mark) == SUPERSEDED
    assert out["final"] == "ok:final"
    assert woken == []


def test_a_long_tasks_mark_goes_out_alone_on_a_quiet_worker(
    batcher: tuple[SyncBatcher, GatedPipeline, list[str]],
) -> None:
    sync, pipeline, woken = batcher
    mark = sync.behind(pack, "mark", ("mark", "t1"))  # held: no other write comes
    pipeline.wait_round(1)  # the mark flusher sends it once it waited MARK_DELAY
    assert pipeline.sent == [["mark"]]
    pipeline.gates[0].set()
    wait_for(lambda: mark.done, what="the mark's reply")
    assert sync.reply(mark) == "ok:mark"
    assert woken == []


def test_a_mark_behind_is_dropped_when_its_final_write_joins_the_batch(
    batcher: tuple[SyncBatcher, GatedPipeline, list[str]],
) -> None:
    sync, pipeline, _ = batcher
    out: dict[str, Any] = {}
    leader, mark = mark_behind_a_send(sync, pipeline, out)
    final = threading.Thread(
        target=lambda: out.__setitem__("final", sync.call(pack, "final", ("final", "t1")))
    )
    final.start()
    wait_for(lambda: len(sync._pending) == 2, what="the final write queued")
    pipeline.gates[0].set()
    pipeline.wait_round(2)
    pipeline.gates[1].set()
    for thread in (leader, final):
        thread.join(10)
    assert pipeline.sent == [["a"], ["final"]]
    assert sync.reply(mark) == SUPERSEDED
    assert out["final"] == "ok:final"


def test_a_parked_write_frees_its_thread_and_its_sender_hands_it_back(
    batcher: tuple[SyncBatcher, GatedPipeline, list[str]],
) -> None:
    sync, pipeline, woken = batcher
    out: dict[str, Any] = {}
    leader = call_in_thread(sync, "a", out)
    pipeline.wait_round(1)

    def final_write() -> Any:
        return (yield partial(sync.submit, pack, "final", ("final", "t1")))

    flow = final_write()
    handed: list[tuple[str, Pending]] = []
    park = lambda pending: handed.append((threading.current_thread().name, pending))  # noqa: E731
    # Behind "a": the flow parks and this thread is free at once (no sleeper, no lock held).
    assert run_parking(flow, park) == (False, None)
    pipeline.gates[0].set()
    pipeline.wait_round(2)  # the leader sends what queued behind it
    assert pipeline.sent[1] == ["final"]
    pipeline.gates[1].set()
    leader.join(10)
    assert [name for name, _ in handed] == [leader.name]  # handed back by the sender, once
    assert resume_parked(flow, park, handed[0][1]) == (True, "ok:final")
    assert woken == []  # nobody slept


class _LaterReply(Pending):
    """A reply the test settles itself, on its own thread (as the mark flusher or any thread
    outside the pool that sends a round trip does)."""

    __slots__ = ("callback", "done", "ok")

    def __init__(self) -> None:
        self.done, self.ok = False, False
        self.callback: Any = None

    def result(self) -> Any:
        return "ok"

    def on_settle(self, callback: Any) -> bool:
        self.callback = callback
        return True

    def settle(self) -> None:
        self.done = self.ok = True
        self.callback()


def park_a_flow(app: Any) -> tuple[_LaterReply, threading.Event]:
    """A flow parked on the worker, as a task's is on its final write; -> (its reply, an event
    set once the flow is finished)."""
    from qtasks.schemas.delivery import Delivery
    from qtasks.workers.base import Running
    from qtasks.workers.thread_worker import _TaskFlow

    reply, finished = _LaterReply(), threading.Event()

    def flow() -> Any:
        yield lambda: reply
        finished.set()

    env = app.broker.make_envelope("noop")
    running = Running(Delivery(envelope=env, token="t", worker_id="w"))
    task = _TaskFlow(running, flow(), contextvars.copy_context())
    parked = task.context.run(run_parking, task.flow, partial(app.worker._park, task))
    assert parked == (False, None)
    return reply, finished


def test_a_flow_handed_back_while_no_pool_thread_runs_is_finished(redis_url: str) -> None:
    app = sync_app(redis_url, name="handback", max_tasks_process=2)
    worker: Any = app.worker
    app.start()
    try:
        reply, finished = park_a_flow(app)
        assert worker._looping == 0  # parked, and no pool thread is running
        reply.settle()  # handed back from this thread, which is not a pool thread
        assert finished.wait(10), "the parked flow was never finished"
        wait_for(lambda: worker._looping == 0, what="the pool thread to leave")
    finally:
        app.stop()


@pytest.mark.parametrize("slots", [1, 2], ids=["every-slot-busy", "a-slot-free"])
def test_a_flow_handed_back_does_not_wait_behind_a_running_task_body(
    redis_url: str, slots: int
) -> None:
    # With every slot in a task body, the flow still needs a thread: the pool keeps one more.
    app = sync_app(redis_url, name="behind", max_tasks_process=slots)
    started, release = threading.Event(), threading.Event()

    @app.task(name="slow")
    def slow() -> None:
        started.set()
        release.wait(30)

    worker: Any = app.worker
    app.start()
    try:
        app.add_task("slow")
        assert started.wait(10)
        assert worker._looping == 1  # a pool thread runs on, inside that body
        reply, finished = park_a_flow(app)
        reply.settle()
        assert finished.wait(10), "the handed-back flow waited behind a task body"
    finally:
        release.set()
        app.stop()


def test_each_sync_task_runs_in_its_own_context_to_after_its_final_write(
    redis_url: str,
) -> None:
    # Flows park on their final writes and are finished by whichever pool thread comes next:
    # a value a plugin sets before the task must still be there after the write, and a value a
    # task body sets must not reach the next task on that thread.
    app = sync_app(redis_url, name="contexts", max_tasks_process=4)
    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="")
    body_var: contextvars.ContextVar[str] = contextvars.ContextVar("body_var", default="")
    seen_after: dict[str, str] = {}
    leaked: list[str] = []

    class Tag:
        @hookimpl
        def worker_execute_before(self, task_broker: Any) -> None:
            current.set(task_broker.id)

        @hookimpl
        def worker_task_success(self, task_broker: Any) -> None:
            seen_after[task_broker.id] = current.get()

    app.add_plugin(Tag())

    @app.task(name="touch")
    def touch(n: int) -> None:
        if body_var.get():
            leaked.append(body_var.get())
        body_var.set(f"task {n}")

    ids = [str(t.uuid) for t in app.add_tasks([("touch", (n,)) for n in range(300)])]
    worker: Any = app.worker
    app.start()
    try:
        wait_for(lambda: len(seen_after) == len(ids), what="every task's success trigger")
    finally:
        app.stop()
    assert seen_after == {task_id: task_id for task_id in ids}
    assert leaked == []
    assert worker.processed == len(ids)


def test_a_freed_slot_runs_the_next_buffered_task_on_its_own_thread(redis_url: str) -> None:
    app = sync_app(redis_url, name="inline", max_tasks_process=1, prefetch=4)
    release = threading.Event()
    ran: list[tuple[int, str]] = []

    @app.task(name="step")
    def step(n: int) -> None:
        if n == 0:
            release.wait(10)
        ran.append((n, threading.current_thread().name))

    app.add_tasks([("step", (n,)) for n in range(5)])
    worker: Any = app.worker
    submitted: list[str] = []
    start = worker._start_delivery
    worker._start_delivery = lambda running: (
        submitted.append(running.delivery.envelope.id),
        start(running),
    )
    app.start()
    try:
        wait_for(lambda: len(worker._buffer) == 4, what="the other tasks buffered")
        release.set()
        wait_for(lambda: worker.processed == 5, what="all tasks done")
    finally:
        app.stop()
    assert [n for n, _ in ran] == [0, 1, 2, 3, 4]
    assert len({name for _, name in ran}) == 1
    assert len(submitted) == 1  # only the first task was handed to the pool


def test_a_freed_slot_wakes_the_claim_loop_only_when_a_claim_is_worth_it(
    redis_url: str,
) -> None:
    app = sync_app(redis_url, name="claims", max_tasks_process=1, prefetch=4)
    gates = [threading.Event() for _ in range(6)]

    @app.task(name="gated")
    def gated(n: int) -> None:
        assert gates[n].wait(10)

    app.add_tasks([("gated", (n,)) for n in range(6)])
    worker: Any = app.worker
    signals: list[int] = []
    signal = worker._signal_capacity
    worker._signal_capacity = lambda: (signals.append(len(worker._buffer)), signal())
    app.start()
    try:
        # The first claim fills the limit: one running, four buffered, the sixth still queued.
        wait_for(lambda: len(worker._leases) == 5, what="the first claim")
        before = len(signals)
        gates[0].set()
        wait_for(lambda: worker.processed == 1 and len(worker._active) == 1, what="task 0")
        # One slot free, three tasks buffered: the claim loop sleeps on.
        assert len(signals) == before
        gates[1].set()
        # Two free (half the prefetch): the claim loop is woken and claims the sixth.
        wait_for(lambda: len(signals) > before, what="the claim loop woken")
        assert signals[before] == 2
        for n in range(2, 6):
            gates[n].set()
        wait_for(lambda: worker.processed == 6, what="the other tasks")
    finally:
        app.stop()
