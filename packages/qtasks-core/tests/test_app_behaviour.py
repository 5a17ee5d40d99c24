"""The runtime's behaviour, run against both app flavours (see conftest.Harness)."""

from __future__ import annotations

import asyncio
import enum
import itertools
import threading
import time
from typing import Any

import pytest

from qtasks import Depends, State
from qtasks.exc import SerializationError, TaskArgumentsError, TaskOptionError, UnknownTaskError
from qtasks.testing.harness import Harness, wait_event


async def test_add_task_returns_new_then_result(harness: Harness) -> None:
    @harness.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    queued = await harness.add_task("double", 21)
    assert queued.status == "new" and queued.args == (21,)
    await harness.start()
    done = await harness.call("wait", queued.uuid, 5)
    assert done.status == "success" and done.returning == 42
    assert done.worker and done.started_at and done.finished_at
    assert done.execution_time is not None and done.execution_time >= 0
    again = await harness.call("get", queued.uuid)
    assert again.returning == 42


async def test_priority_order_with_concurrency_one(harness: Harness) -> None:
    harness.app.config.max_tasks_process = 1
    ran: list[int] = []

    @harness.task(name="record")
    def record(n: int) -> None:
        ran.append(n)

    # Lower number first, FIFO within a priority; enqueued before any worker runs.
    plan = [(5, 1), (1, 2), (3, 3), (0, 4), (9, 5), (1, 6), (0, 7)]
    tasks = [await harness.add_task("record", n, priority=p) for p, n in plan]
    await harness.start()
    for task in tasks:
        assert (await harness.call("wait", task.uuid, 5)).status == "success"
    assert ran == [4, 7, 2, 6, 3, 1, 5]


async def test_retry_with_backoff_timing(harness: Harness) -> None:
    stamps: list[float] = []

    @harness.task(
        name="flaky",
        retry=3,
        retry_backoff=0.05,
        retry_backoff_factor=2,
        retry_on_exc=[LookupError],
    )
    def flaky() -> None:
        stamps.append(time.monotonic())
        raise KeyError("missing")  # a subclass of LookupError: matches

    await harness.start()
    final = await harness.add_task("flaky", timeout=5)
    assert final.status == "error" and final.attempt == 3
    assert "KeyError" in final.traceback
    assert len(stamps) == 4
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2], strict=True):
        assert expected <= gap < expected + 0.5
    first = await harness.call("get", final.retry_parent_uuid)
    assert first.status == "retry" and first.retry_child_uuid == str(final.uuid)


async def test_retry_skips_exceptions_that_do_not_match(harness: Harness) -> None:
    calls = []

    @harness.task(name="typed", retry=3, retry_on_exc=[KeyError])
    def typed() -> None:
        calls.append(1)
        raise ValueError("not retried")

    await harness.start()
    final = await harness.add_task("typed", timeout=5)
    assert final.status == "error" and len(calls) == 1


async def test_max_time_async_and_sync(harness: Harness) -> None:
    release = threading.Event()

    @harness.task(name="slow_async", max_time=0.2)
    async def slow_async() -> None:
        await asyncio.sleep(5)

    @harness.task(name="slow_sync", max_time=0.2)
    def slow_sync() -> str:
        release.wait(5)
        return "late"

    await harness.start()
    for name in ("slow_async", "slow_sync"):
        started = time.monotonic()
        final = await harness.add_task(name, timeout=5)
        assert final.status == "error" and "TaskTimeoutError" in final.traceback
        assert time.monotonic() - started < 1.5, name  # recorded on time
    release.set()


async def test_cancel_queued_task_never_runs(harness: Harness) -> None:
    ran = []

    @harness.task(name="never")
    def never() -> None:
        ran.append(1)

    task = await harness.add_task("never")
    assert await harness.call("cancel", task.uuid, "not needed") == "cancelled"
    await harness.start()
    record = await harness.call("wait", task.uuid, 1)
    assert record.status == "cancel" and record.cancel_reason == "not needed"
    marker = await harness.add_task("never", timeout=5)  # the queue moved on
    assert marker.status == "success" and len(ran) == 1


async def test_cancel_running_task(harness: Harness) -> None:
    started = threading.Event()
    finish = threading.Event()

    @harness.task(name="long_async")
    async def long_async() -> str:
        started.set()
        await asyncio.sleep(10)
        return "finished"

    @harness.task(name="long_sync")
    def long_sync() -> str:
        started.set()
        finish.wait(10)
        return "finished"

    await harness.start()
    for name in ("long_async", "long_sync"):
        started.clear()
        task = await harness.add_task(name)
        await wait_event(started)
        assert await harness.call("cancel", task.uuid, "stop it") == "signalled"
        if name == "long_sync":
            finish.set()  # a thread cannot be stopped: its result is discarded
        record = await harness.call("wait", task.uuid, 5)
        assert record.status == "cancel" and record.returning is None, name


async def test_generator_tasks(harness: Harness) -> None:
    @harness.task(name="gen", generate_handler=lambda v: v + 1)
    def gen(n: int) -> Any:
        yield from range(n)

    @harness.task(name="agen")
    async def agen(n: int) -> Any:
        for i in range(n):
            yield i * 10

    await harness.start()
    assert (await harness.add_task("gen", 3, timeout=5)).returning == [1, 2, 3]
    assert (await harness.add_task("agen", 3, timeout=5)).returning == [0, 10, 20]


async def test_depends_isolated_between_concurrent_tasks(harness: Harness) -> None:
    opened: list[str] = []
    closed: list[str] = []
    both_running = threading.Barrier(2, timeout=5)
    counter = iter(range(100))

    def resource() -> Any:
        name = f"r{next(counter)}"
        opened.append(name)
        yield {"name": name, "open": True}
        closed.append(name)

    @harness.task(name="uses")
    def uses(hold: float, res: Any = Depends(resource)) -> str:
        both_running.wait()
        time.sleep(hold)
        assert name_open(res, closed)  # the other task finishing did not close ours
        return str(res["name"])

    await harness.start()
    a = await harness.add_task("uses", 0.0)
    b = await harness.add_task("uses", 0.2)
    ra = await harness.call("wait", a.uuid, 5)
    rb = await harness.call("wait", b.uuid, 5)
    assert ra.status == "success" and rb.status == "success", (ra.traceback, rb.traceback)
    assert ra.returning != rb.returning
    assert sorted(closed) == sorted(opened) and len(opened) == 2


def name_open(res: Any, closed: list[str]) -> bool:
    return str(res["name"]) not in closed


async def test_bulk_enqueue(harness: Harness) -> None:
    @harness.task(name="inc")
    def inc(x: int) -> int:
        return x + 1

    tasks = await harness.call("add_tasks", [inc(i) for i in range(50)] + [("inc", (100,))])
    assert len(tasks) == 51 and all(t.status == "new" for t in tasks)
    await harness.start()
    results = [await harness.call("wait", t.uuid, 5) for t in tasks]
    assert [r.returning for r in results] == [*range(1, 51), 101]


async def test_eta_and_delay(harness: Harness) -> None:
    starts: dict[str, float] = {}

    @harness.task(name="stamp")
    def stamp(key: str) -> None:
        starts[key] = time.time()

    await harness.start()
    before = time.time()
    late = await harness.call("enqueue", "stamp", ("late",), eta=before + 0.4)
    soon = await harness.call("enqueue", "stamp", ("soon",), delay=0.1)
    now = await harness.call("enqueue", "stamp", ("now",))
    for task in (late, soon, now):
        assert (await harness.call("wait", task.uuid, 5)).status == "success"
    assert starts["late"] >= before + 0.4
    assert starts["soon"] >= before + 0.1
    assert starts["now"] < starts["soon"] < starts["late"]


async def test_result_wait_wakes_within_milliseconds(harness: Harness) -> None:
    gate = threading.Event()

    @harness.task(name="gated")
    def gated() -> str:
        gate.wait(5)
        return "ok"

    await harness.start()
    task = await harness.add_task("gated")
    waiter = asyncio.ensure_future(harness.call("wait", task.uuid, 5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    gate.set()
    record = await waiter
    latency = time.time() - record.finished_at.timestamp()
    assert record.status == "success"
    # Woken by the write, not by a 1 s poll (the bound leaves room for a loaded CI machine).
    assert latency < 0.3


async def test_bad_input_is_typed_and_worker_survives(harness: Harness) -> None:
    @harness.task(name="needs_two")
    def needs_two(a: int, b: int) -> int:
        return a + b

    @harness.task(name="unencodable")
    def unencodable() -> Any:
        return {1, 2}

    @harness.task(name="not_utf8")
    def not_utf8() -> str:
        return "\udcff"  # a lone surrogate, as `os.fsdecode` makes of an undecodable byte

    @harness.task(name="too_big")
    def too_big(text: str) -> str:
        return text

    harness.app.config.max_result_bytes = 2048

    with pytest.raises(UnknownTaskError, match="nope"):
        await harness.add_task("nope")
    with pytest.raises(TaskArgumentsError, match="needs_two"):
        await harness.add_task("needs_two", 1)
    with pytest.raises(SerializationError):
        await harness.add_task("needs_two", object(), 2)
    with pytest.raises(SerializationError, match="UTF-8"):
        await harness.add_task("needs_two", "\udcff", 2)
    await harness.start()
    record = await harness.add_task("unencodable", timeout=5)
    assert record.status == "error" and "SerializationError" in record.traceback
    record = await harness.add_task("not_utf8", timeout=5)
    assert record.status == "error" and "not valid UTF-8 text" in record.traceback
    # The JSON of 2,046 characters is 2,048 bytes: at the cap. One more is over it, and so is
    # half as many characters that take two bytes each, though their count is under the cap.
    assert (await harness.add_task("too_big", "x" * 2046, timeout=5)).status == "success"
    for text in ("x" * 2047, "\u00e9" * 1024):
        record = await harness.add_task("too_big", text, timeout=5)
        assert record.status == "error" and record.returning is None
        assert "ResultTooLargeError" in record.traceback and "2048-byte cap" in record.traceback
    assert (await harness.add_task("needs_two", 1, 2, timeout=5)).returning == 3


BAD_OPTIONS: list[dict[str, Any]] = [
    {"priority": 1.5},
    {"priority": "1"},
    {"priority": True},
    {"eta": "soon"},
    {"eta": float("nan")},
    {"delay": "5"},
    {"delay": float("inf")},
    {"timeout": "1"},
    {"timeout": -1},
    {"queue": 5},
    {"queue": ""},
    {"queue": "\udcff"},
    {"headers": [("k", "v")]},
    {"headers": {"k": 1}},
    {"extra": ["x"]},
]


async def test_bad_enqueue_options_are_typed_and_write_nothing(harness: Harness) -> None:
    # A priority of "1" or 1.5 used to be written and then dead-lettered by the worker, which
    # could not read it back; a timeout of "1" failed only after its task was enqueued.
    @harness.task(name="t")
    def t() -> str:
        return "ok"

    for options in BAD_OPTIONS:
        with pytest.raises(TaskOptionError, match=f"task 't': {next(iter(options))} "):
            await harness.call("enqueue", "t", **options)
    with pytest.raises(TaskOptionError, match="priority must be an int"):
        await harness.add_task("t", priority=2.0)

    def u() -> None: ...

    with pytest.raises(TaskOptionError, match="priority must be an int, not str"):
        harness.app.task(name="u", priority="high")(u)
    with pytest.raises(TaskOptionError, match="timeout must be 0 or more"):
        await harness.call("wait", "an id", timeout=-1)
    with pytest.raises(TaskOptionError, match="timeout must be a number of seconds, not None"):
        await harness.call("wait", "an id", timeout=None)
    with pytest.raises(TaskOptionError, match=r"unknown option\(s\) delay_s; the options are"):
        await harness.call("enqueue", "t", delay_s=5)
    with pytest.raises(TaskOptionError, match="args must be a tuple or list, not str"):
        await harness.call("enqueue", "t", "abc")  # not three arguments "a", "b", "c"
    with pytest.raises(TaskOptionError, match="kwargs must be a dict, not list"):
        await harness.call("enqueue", "t", (), [("a", 1)])
    for name in (5, None, ""):
        with pytest.raises(TaskOptionError, match="a task name must be a non-empty str"):
            await harness.call("enqueue", name)
        with pytest.raises(TaskOptionError, match="a task name must be a non-empty str"):
            await harness.add_task(name)
    for calls in (
        5,
        "t",
        [("t",), "t"],
        [("t", (), {}, 0, "x")],
        [("t", "ab")],
        [("t", (), {}, 0.5)],
    ):
        with pytest.raises(TaskOptionError):
            await harness.call("add_tasks", calls)  # the first call is valid: all or nothing
    stats = await harness.call_on(harness.app.broker, "stats")
    assert sum(q["ready"] + q["delayed"] for q in stats["queues"].values()) == 0
    assert "u" not in harness.app.tasks

    class Level(enum.IntEnum):
        HIGH = -1

    await harness.start()
    record = await harness.call("enqueue", "t", priority=Level.HIGH, timeout=5)
    assert record.status == "success" and type(record.priority) is int and record.priority == -1


async def test_unknown_task_in_queue_is_dead_lettered(harness: Harness) -> None:
    @harness.task(name="known")
    def known() -> str:
        return "ok"

    harness.app.config.enqueue_unknown_tasks = True
    await harness.start()
    record = await harness.add_task("os.system", "touch /tmp/qtasks-canary", timeout=5)
    assert record.status == "error" and "UnknownTaskError" in record.traceback
    dead = await harness.call_on(harness.app.broker, "list_dead")
    assert [d.reason for d in dead] == ["unknown_task"]
    assert (await harness.add_task("known", timeout=5)).returning == "ok"


async def test_echo_context(harness: Harness) -> None:
    @harness.task(name="ctx", echo=True)
    def ctx(self: Any, x: int) -> dict[str, Any]:
        return {"name": self.ctx.task_name, "uuid": self.ctx.task_uuid, "x": x}

    @harness.task(name="quits", echo=True)
    def quits(self: Any) -> None:
        self.ctx.cancel("changed my mind")

    await harness.start()
    record = await harness.add_task("ctx", 7, timeout=5)
    assert record.returning == {"name": "ctx", "uuid": str(record.uuid), "x": 7}
    quit_record = await harness.add_task("quits", timeout=5)
    assert quit_record.status == "cancel" and quit_record.cancel_reason == "changed my mind"


async def test_events_fire(harness: Harness) -> None:
    seen: list[str] = []
    for name in ("starting", "task_success", "task_error", "stopping"):
        harness.app.events.on.__getattr__(name)()(lambda name=name, **kw: seen.append(name))

    @harness.task(name="ok")
    def ok() -> None:
        return None

    @harness.task(name="bad")
    def bad() -> None:
        raise RuntimeError("bad")

    await harness.start()
    await harness.add_task("ok", timeout=5)
    await harness.add_task("bad", timeout=5)
    await harness.stop()
    assert seen == ["starting", "task_success", "task_error", "stopping"]


async def test_stop_hands_back_unstarted_work(harness: Harness) -> None:
    harness.app.config.max_tasks_process = 1
    harness.app.config.prefetch = 3
    gate = threading.Event()
    started = threading.Event()

    @harness.task(name="blocker")
    def blocker() -> None:
        started.set()
        gate.wait(5)

    tasks = [await harness.add_task("blocker") for _ in range(4)]
    await harness.start()
    await wait_event(started)
    stopping = asyncio.ensure_future(harness.stop(5))
    await asyncio.sleep(0.05)
    gate.set()
    await stopping
    records = [await harness.call("get", t.uuid) for t in tasks]
    assert [r.status for r in records].count("success") == 1
    stats = await harness.call_on(harness.app.broker, "stats")
    assert stats["queues"]["default"]["ready"] == 3  # handed back, not lost
    assert [r.status for r in records].count("new") == 3


async def test_middlewares(harness: Harness) -> None:
    order: list[str] = []

    class Before:
        def __init__(self, executor: Any) -> None:
            self.executor = executor

        def __call__(self) -> None:
            order.append("before")
            self.executor.args = [a * 10 for a in self.executor.args]

    class After(Before):
        def __call__(self) -> None:
            order.append("after")

    harness.app.add_middleware(Before, position="before")

    @harness.task(name="mw", middlewares_after=[After])
    def mw(x: int) -> int:
        order.append("run")
        return x

    await harness.start()
    assert (await harness.add_task("mw", 2, timeout=5)).returning == 20
    assert order == ["before", "run", "after"]


async def test_live_worker_registry(harness: Harness) -> None:
    registry = harness.app.broker.storage.global_config
    await harness.start()
    workers = await harness.call_on(registry, "get_all", "workers")
    info = workers[harness.app.worker.worker_id]
    assert info["pid"] > 0 and info["host"] and info["queues"] == ["default"]
    await harness.stop()
    assert await harness.call_on(registry, "get_all", "workers") == {}


def request_cleanup(harness: Harness, name: str) -> None:
    from qtasks.registries.registrar import shared_registry

    harness.cleanups.append(
        lambda: (shared_registry.tasks.pop(name, None), shared_registry.handles.pop(name, None))
    )


class Counter(State):
    """Annotations are resolved against the module, as `typing.get_type_hints` does."""


async def test_routers_shared_tasks_and_state(harness: Harness) -> None:
    from qtasks import Router, shared_task

    router = Router()

    @router.task
    def bare(x: int) -> int:
        return x * 3

    @router.task("named", priority=2)
    def named(counter: Counter) -> int:
        counter.update(hits=(counter.get("hits") or 0) + 1)
        return int(counter.get("hits"))

    @shared_task(name=f"shared-{harness.kind}")
    def shared() -> str:
        return "shared"

    # Shared tasks join every app built later in this process: take it back afterwards.
    request_cleanup(harness, f"shared-{harness.kind}")

    Counter().clear()  # State is per process and class, shared by both flavours' runs
    harness.app.include_router(router)
    with pytest.raises(ValueError, match="already registered"):
        harness.app.include_router(router)
    await harness.start()
    assert (await harness.add_task("bare", 2, timeout=5)).returning == 6
    assert (await harness.add_task("named", timeout=5)).returning == 1
    assert (await harness.add_task("named", timeout=5)).returning == 2
    assert (await harness.add_task(f"shared-{harness.kind}", timeout=5)).returning == "shared"
    deferred = bare(4)
    task = await harness.call_on(deferred, "add_task")
    assert (await harness.call("wait", task.uuid, 5)).returning == 12


async def test_task_wait_result_follows_retries(harness: Harness) -> None:
    @harness.task(name="twice", retry=1)
    def twice() -> None:
        raise RuntimeError("always")

    task = await harness.add_task("twice")
    await harness.start()
    if harness.kind == "async":
        final = await task.wait_result_async(5)
    else:
        final = await asyncio.to_thread(task.wait_result, 5)
    assert final.status == "error" and final.attempt == 1
    assert final.retry_parent_uuid == str(task.uuid)


async def test_admin_stats_dead_letters_and_purge(harness: Harness) -> None:
    app = harness.app
    app.config.enqueue_unknown_tasks = True

    @harness.task(name="noop")
    def noop() -> None:
        return None

    for priority in (0, 0, 5):
        await harness.add_task("noop", priority=priority)
    await harness.call("enqueue", "noop", delay=60)
    stats = await harness.call_on(app.broker, "stats")
    assert stats["queues"]["default"] == {"ready": 3, "delayed": 1, "priorities": {"0": 2, "5": 1}}
    assert await harness.call_on(app.broker, "purge_queue", "default") == 4
    counts = await harness.call_on(app.broker.storage, "counts")
    assert counts == {"cancel": 4}

    await harness.start()
    ghost = await harness.add_task("ghost", timeout=5)  # unknown: dead-lettered
    dead = await harness.call_on(app.broker, "list_dead")
    assert [(d.uuid, d.reason) for d in dead] == [(str(ghost.uuid), "unknown_task")]

    @harness.task(name="ghost")  # deploy the missing task, then retry the dead letter
    def ghost_task() -> str:
        return "back"

    assert await harness.call_on(app.broker, "retry_dead", ghost.uuid)
    assert (await harness.call("wait", ghost.uuid, 5)).returning == "back"
    assert await harness.call_on(app.broker, "list_dead") == []
    stats = await harness.call_on(app.broker, "stats")
    assert stats["finished_last_minute"] >= 1 and stats["dead"] == 0
    listed = await harness.call_on(app.broker.storage, "list", status="success")
    assert [t.task_name for t in listed] == ["ghost"]


async def test_depends_worker_scope_lives_until_the_worker_stops(harness: Harness) -> None:
    events: list[str] = []

    def pool() -> Any:
        events.append("open")
        yield "pool"
        events.append("close")

    @harness.task(name="pooled")
    def pooled(p: Any = Depends(pool, scope="worker")) -> str:
        return str(p)

    await harness.start()
    for _ in range(3):
        assert (await harness.add_task("pooled", timeout=5)).returning == "pool"
    assert events == ["open"]  # one value shared by the worker's tasks
    await harness.stop()
    assert events == ["open", "close"]


async def test_suspects_run_one_at_a_time_beside_other_tasks(harness: Harness) -> None:
    # A suspect is a task whose lease lapsed before (its worker died while holding it). If
    # suspects ran together, a poison one would take its fellow suspects down with it again
    # and count crashes against them too (chaos C7).
    harness.app.config.max_tasks_process = 4
    lock = threading.Lock()
    suspects = {"now": 0, "peak": 0}
    beside: list[bool] = []
    plain_ran = threading.Event()

    @harness.task(name="probe")
    def probe(kind: str) -> None:
        if kind == "plain":
            plain_ran.set()
            return
        with lock:
            suspects["now"] += 1
            suspects["peak"] = max(suspects["peak"], suspects["now"])
        beside.append(plain_ran.wait(5))  # plain tasks still run while a suspect does
        with lock:
            suspects["now"] -= 1

    queued = [await harness.add_task("probe", "suspect") for _ in range(3)]
    for task in queued:
        harness.app.broker.store.recoveries[str(task.uuid)] = 1
    queued += [await harness.add_task("probe", "plain") for _ in range(3)]
    await harness.start()
    records = [await harness.call("wait", t.uuid, 10) for t in queued]
    assert [r.status for r in records] == ["success"] * 6
    assert suspects["peak"] == 1 and beside == [True, True, True]
