"""C. Bad input and poison (reliability.md section 7): names that must not choose code, values
that cannot be encoded, bytes that are not tasks, payloads too big, tasks that raise, hang or
kill their own worker."""

from __future__ import annotations

import json
import math
import pickle
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from chaos_support import (
    Faults,
    Ledger,
    Touch,
    admin,
    check,
    dead_reasons,
    inject,
    producer,
    rss_kib,
    settled,
    wait_for,
)

from qtasks.exc import PayloadTooLargeError, SerializationError
from qtasks.testing import RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]


def test_c1_unknown_task(
    server: RedisServer, workers: Any, ledger: Ledger, tmp_path: Path, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    worker = workers.start(url)
    workers.ready(app, worker)
    canary = tmp_path / "canary.txt"
    sent = time.monotonic()
    nope = str(app.add_task("nope", "x").uuid)
    system = str(app.add_task("os.system", f"touch {canary}").uuid)
    good = [str(t.uuid) for t in app.add_tasks([("work", (f"g{i}",)) for i in range(20)])]
    wait_for(lambda: {nope, system} <= set(dead_reasons(app)), 5, "two dead letters")
    dead_in = time.monotonic() - sent
    wait_for(lambda: settled(url, good), 10, "the other tasks")
    report = check(url, [nope, system, *good], ledger)
    chaos_result.checked(report)
    chaos_result.set(dead_in_seconds=round(dead_in, 2), faults=2)
    report.assert_clean(at_rest=None)
    assert report.placement == {"dead": 2, "terminal": 20}
    assert dead_in < 1.0 + 0.5, dead_in  # within 1 s (plus this poll)
    reasons = dead_reasons(app)
    assert reasons[nope] == reasons[system] == "unknown_task"
    assert not canary.exists()
    assert {nope, system}.isdisjoint(ledger.ids("start"))  # nothing ran
    record = app.get(system)
    assert record.status == "error" and "not registered" in record.traceback
    assert worker.alive()
    assert set(workers.stop_all().values()) == {0}


def test_c2_non_serializable_args(server: RedisServer, chaos_result: Any) -> None:
    app = producer(server.url)
    client = admin(server.url)
    before = client.dbsize()
    # "\udcff": a lone surrogate (`os.fsdecode` makes them), which UTF-8 refuses.
    bad: list[Any] = [object(), lambda: 1, math.nan, {1, 2}, math.inf, "\udcff"]
    for value in bad:
        with pytest.raises(SerializationError):
            app.add_task("work", value)
        with pytest.raises(SerializationError):
            app.add_task("work", "k", extra_kw=value)
    assert client.dbsize() == before  # nothing written, not even a record
    chaos_result.set(tasks=2 * len(bad), faults=2 * len(bad))


MALFORMED: dict[str, bytes] = {
    "bad-bytes": b"\xff\xfe",
    "truncated": b'{"v":1,"id":"truncated","task":"work","args":[',
    "empty-list": b"[]",
    "mistyped": b'{"v":1,"id":"mistyped","task":"work","args":"nope","kwargs":[]}',
    "deep": b'{"v":1,"id":"deep","task":"work","args":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "two-mb": b'{"v":1,"id":"two-mb","task":"work","args":["' + b"x" * (2 << 20) + b'"]}',
}
REASONS = {
    "bad-bytes": "decode_error",
    "truncated": "decode_error",
    "pickle": "decode_error",
    "empty-list": "invalid_schema",
    "mistyped": "invalid_schema",
    "deep": "invalid_schema",
    "two-mb": "oversized",
}


def test_c3_malformed_injection(
    server: RedisServer, workers: Any, ledger: Ledger, tmp_path: Path, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    client = admin(url)
    worker = workers.start(url)
    workers.ready(app, worker)
    rss_before = rss_kib(worker.pid)
    canary = tmp_path / "canary.txt"
    entries = {**MALFORMED, "pickle": pickle.dumps(Touch(canary))}
    mark = len(worker.log())
    sent = time.monotonic()
    for task_id, payload in entries.items():
        inject(client, task_id, payload)
    good = str(app.add_task("work", "after").uuid)  # its wake-up also wakes the worker
    wait_for(lambda: set(entries) <= set(dead_reasons(app)), 5, "every entry dead-lettered")
    dead_in = time.monotonic() - sent
    wait_for(lambda: settled(url, [good]), 5, "the good task")
    reasons = dead_reasons(app)
    assert {task_id: reasons[task_id] for task_id in entries} == REASONS
    assert dead_in < 1.5, dead_in
    assert not canary.exists()  # the pickle was never loaded
    assert all(len(e.sample.encode()) <= 1024 for e in app.broker.list_dead(limit=100))
    logged = [line for line in worker.log()[mark:].splitlines() if "dead-lettering" in line]
    assert len(logged) == len(entries)
    assert max(len(line.encode()) for line in logged) <= 1024 + 200  # a sample, not the body
    assert worker.alive()
    grown = (rss_kib(worker.pid) - rss_before) / 1024
    assert grown < 50, f"RSS grew by {grown:.0f} MiB"
    report = check(url, [good], ledger)
    chaos_result.checked(report)
    chaos_result.set(tasks=len(entries) + 1, faults=len(entries), dead_in_seconds=round(dead_in, 2))
    chaos_result.set(rss_growth_mib=round(grown, 1))
    report.assert_clean()
    assert set(workers.stop_all().values()) == {0}


def test_c4_huge_payload(
    server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    client = admin(url)
    before = client.dbsize()
    with pytest.raises(PayloadTooLargeError):
        app.add_task("work", "x" * (10 << 20))
    assert client.dbsize() == before  # refused before anything was written
    worker = workers.start(url)
    workers.ready(app, worker)
    rss_before = rss_kib(worker.pid)
    big = "y" * (900 << 10)
    task = app.add_task("work", big)
    record = app.wait(task.uuid, 20)
    assert record is not None and record.status == "success" and record.returning == big
    injected = json.dumps({"v": 1, "id": "ten-mb", "task": "work", "args": ["z" * (10 << 20)]})
    inject(client, "ten-mb", injected.encode())
    client.rpush("tq:wake:default", "1")
    wait_for(lambda: "ten-mb" in dead_reasons(app), 5, "the 10 MiB entry dead-lettered")
    assert dead_reasons(app)["ten-mb"] == "oversized"
    # The claim script sends 1 KiB of an oversized payload, never the whole of it.
    grown = (rss_kib(worker.pid) - rss_before) / 1024
    assert grown < 10, f"RSS grew by {grown:.0f} MiB"
    report = check(url, [str(task.uuid)], ledger)
    chaos_result.checked(report)
    chaos_result.set(tasks=3, faults=2, rss_growth_mib=round(grown, 1))
    report.assert_clean()
    assert set(workers.stop_all().values()) == {0}


def test_c5_task_raises(
    server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    worker = workers.start(url)
    workers.ready(app, worker)
    retried = str(app.add_task("flaky", "v", "value").uuid)
    fatal = str(app.add_task("flaky", "t", "type").uuid)
    boom = str(app.add_task("flaky", "b", "boom").uuid)
    final = app.wait(retried, 20)  # follows the retry links to the last attempt
    assert final is not None and final.status == "error"
    assert "ValueError: flaky failed as planned" in final.traceback
    assert len(final.traceback) <= 16 * 1024 + 10
    starts = sorted(e.at for e in ledger.events() if e.kind == "start" and e.key == "v")
    assert len(starts) == 4  # the first attempt and three retries
    gaps = [b - a for a, b in pairwise(starts)]
    # Backoff 50 ms, doubling: each gap is at least its backoff (minus clock slack).
    assert all(gap >= 0.05 * 2**n - 0.005 for n, gap in enumerate(gaps)), gaps
    for task_id, text in ((fatal, "TypeError: not retryable"), (boom, "Boom")):
        record = app.wait(task_id, 10)
        assert record is not None and record.status == "error"
        assert text in record.traceback
    assert sum(1 for e in ledger.events() if e.kind == "start" and e.key in "tb") == 2
    wait_for(lambda: settled(url, [retried, fatal, boom]), 5, "records")
    report = check(url, [retried, fatal, boom], ledger)
    chaos_result.checked(report)
    chaos_result.set(attempts_of_retried=len(starts), backoff_gaps=[round(g, 3) for g in gaps])
    report.assert_clean()
    assert set(workers.stop_all().values()) == {0}


@pytest.mark.parametrize("flavour", ["async", "sync"])
def test_c6_task_timeout(
    flavour: str, server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    # One slot: the task after the hung one starts only once the slot is free.
    worker = workers.start(url, flavour, max_tasks_process=1, prefetch=0)
    workers.ready(app, worker)
    hung = str(app.add_task("slow", "h", 2.0).uuid)
    after = str(app.add_task("work", "n").uuid)
    record = app.wait(hung, 5)
    assert record is not None and record.status == "error"
    assert "TaskTimeoutError" in record.traceback
    run = ledger.executions()[hung][0]
    recorded_after = record.finished_at.timestamp() - run.start
    assert recorded_after < 0.6, recorded_after
    wait_for(lambda: settled(url, [after]), 5, "the next task")
    freed_after = ledger.executions()[after][0].start - run.start
    # Policy: the slot is freed on time. A blocking function cannot be stopped; it runs on in
    # a helper thread (at most 64), and its late return is dropped, never written.
    assert freed_after < 0.6 + 0.2, freed_after
    time.sleep(max(0.0, run.start + 2.3 - time.time()))  # let the late return happen
    assert app.get(hung).status == "error"  # not overwritten by the late result
    report = check(url, [hung, after], ledger)
    chaos_result.checked(report)
    chaos_result.set(
        tasks=2,
        faults=1,
        **{f"{flavour}_recorded_after": round(recorded_after, 3)},
        **{f"{flavour}_slot_freed_after": round(freed_after, 3)},
    )
    report.assert_clean()
    assert ledger.count("ack") == 2
    assert set(workers.stop_all().values()) == {0}


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_c7_poison_crasher(
    flavour: str, server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    timing = {"lease_timeout": 0.5, "heartbeat_interval": 0.1, "max_recoveries": 2}
    # Default concurrency and prefetch: the poison's first crash takes the tasks claimed beside
    # it down too, and all of them become suspects; suspects then run one at a time with their
    # start made durable, so later crashes count only against the poison.
    pool = [workers.start(url, flavour, **timing) for _ in range(2)]
    workers.ready(app, *pool)
    poison = str(app.add_task("suicide", "p").uuid)
    good = [str(t.uuid) for t in app.add_tasks([("work", (f"g{i}", 0.01)) for i in range(30)])]
    faults = Faults()
    deadline = time.monotonic() + 40
    # Supervise: respawn every worker the poison kills, until it is dead-lettered.
    while not settled(url, [poison, *good]):
        assert time.monotonic() < deadline, workers.logs()
        for worker in [w for w in pool if not w.alive()]:
            faults.add_pid(worker.pid)
            pool.remove(worker)
            pool.append(workers.start(url, flavour, **timing))
        time.sleep(0.05)  # supervisor tick
    runs = ledger.executions()[poison]
    assert len(runs) == 3  # max_recoveries=2: the run, two re-runs, then the dead letter
    assert faults.count == 3
    assert dead_reasons(app)[poison] == "poison"
    record = app.get(poison)
    assert record.status == "error" and "poison" in record.traceback
    report = check(url, [poison, *good], ledger, faults)
    chaos_result.checked(report, faults)
    report.assert_clean(at_rest=None)
    assert report.placement == {"dead": 1, "terminal": 30}
    bystanders = [i for i in good if app.get(i).recoveries]
    assert all(app.get(i).status == "success" for i in good)  # none dead-lettered with it
    chaos_result.set(bystanders_recovered=len(bystanders))  # claimed beside it, then re-run
    workers.stop_all()
