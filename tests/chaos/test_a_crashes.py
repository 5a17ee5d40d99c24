"""A. Crashes and leases (reliability.md section 7): worker processes die, pause and stop."""

from __future__ import annotations

import random
import signal
import threading
import time
from typing import Any

import pytest
from chaos_support import (
    Faults,
    Ledger,
    admin,
    check,
    enqueue_to,
    final_count,
    producer,
    registered_pids,
    settled,
    wait_for,
)

from qtasks.testing import RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]


def kill_storm(
    server: RedisServer,
    workers: Any,
    ledger: Ledger,
    rng: random.Random,
    result: Any,
    *,
    flavour: str,
    n: int,
    kills: int,
    concurrency: int,
    prefetch: int = 2,
    window: tuple[float, float] = (0.2, 1.5),
) -> None:
    """N tasks of 0-5 ms over two workers; SIGKILL one at each seeded time and respawn it."""
    url = server.url
    app = producer(url)
    config = {"max_tasks_process": concurrency, "prefetch": prefetch}
    pool = [workers.start(url, flavour, **config) for _ in range(2)]
    workers.ready(app, *pool)
    calls = [("work", (f"k{i}", round(rng.uniform(0, 0.005), 4))) for i in range(n)]
    started = time.monotonic()
    ids = [str(task.uuid) for task in app.add_tasks(calls)]
    faults = Faults()
    running_at_kill = 0
    for at in sorted(rng.uniform(*window) for _ in range(kills)):
        # The fault schedule itself (seeded times), not a wait standing in for an event.
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        victim = rng.choice([w for w in pool if w.alive()])
        victim.kill9()
        faults.add_pid(victim.pid)
        runs = [r for rs in ledger.executions().values() for r in rs if r.pid == victim.pid]
        running_at_kill += sum(1 for r in runs if not r.acked)
        pool.remove(victim)
        pool.append(workers.start(url, flavour, **config))
    wait_for(lambda: final_count(url) >= n and settled(url, ids), 90, f"{n} tasks to settle")
    report = check(url, ids, ledger, faults)
    result.checked(report, faults)
    result.set(running_at_kill=running_at_kill)
    report.assert_clean()
    # I3: every extra run is a run the kill cut short, and Redis counted its recovery. A
    # worker holds at most twice its slots and prefetch: tasks whose final write is under way
    # free their slot for the next claim (`BaseWorker.capacity`), and are not acked yet.
    assert report.dup_exec <= running_at_kill <= kills * 2 * (concurrency + prefetch)
    assert report.dup_exec <= report.redelivered
    codes = workers.stop_all()
    assert set(codes.values()) == {0}, codes


def test_a1_kill9_storm(
    server: RedisServer, workers: Any, ledger: Ledger, rng: random.Random, chaos_result: Any
) -> None:
    kill_storm(
        server, workers, ledger, rng, chaos_result, flavour="sync", n=2000, kills=3, concurrency=4
    )


@pytest.mark.chaos_slow
def test_a1_kill9_storm_slow(
    server: RedisServer, workers: Any, ledger: Ledger, rng: random.Random, chaos_result: Any
) -> None:
    kill_storm(
        server,
        workers,
        ledger,
        rng,
        chaos_result,
        flavour="sync",
        n=20_000,
        kills=10,
        concurrency=4,
        window=(0.5, 12.0),
    )


def test_a2_kill9_async(
    server: RedisServer, workers: Any, ledger: Ledger, rng: random.Random, chaos_result: Any
) -> None:
    kill_storm(
        server, workers, ledger, rng, chaos_result, flavour="async", n=2000, kills=2, concurrency=50
    )


@pytest.mark.chaos_slow
def test_a2_kill9_async_slow(
    server: RedisServer, workers: Any, ledger: Ledger, rng: random.Random, chaos_result: Any
) -> None:
    kill_storm(
        server,
        workers,
        ledger,
        rng,
        chaos_result,
        flavour="async",
        n=20_000,
        kills=10,
        concurrency=50,
        window=(0.5, 10.0),
    )


def test_a3_crash_windows(
    server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    spec = {"crash_at": "after_claim:c,after_exec:e,after_ack:a", "max_tasks_process": 1}
    spec["prefetch"] = 0  # one task per worker, so each crash takes exactly one task down
    pool = [workers.start(url, **spec) for _ in range(3)]
    workers.ready(app, *pool)
    ids = {key: str(app.add_task("work", key).uuid) for key in ("c", "e", "a")}
    faults = Faults()
    deadline = time.monotonic() + 30
    # Supervise: respawn each worker that crashed, until every task has its final record.
    while not settled(url, list(ids.values())):
        assert time.monotonic() < deadline, workers.logs()
        for worker in [w for w in pool if not w.alive()]:
            assert worker.wait(1) == 137
            faults.add_pid(worker.pid)
            pool.remove(worker)
            pool.append(workers.start(url, **spec))
        time.sleep(0.05)  # supervisor tick
    report = check(url, ids.values(), ledger, faults)
    chaos_result.checked(report, faults)
    report.assert_clean()
    runs = ledger.executions()
    records = {key: app.get(task_id) for key, task_id in ids.items()}
    assert all(r.status == "success" for r in records.values())
    # after_claim: never ran where it crashed; runs exactly once after the lease lapsed
    assert len(runs[ids["c"]]) == 1 and records["c"].recoveries == 1
    # after_exec: ran twice (the first result was never written), one record, counted
    assert len(runs[ids["e"]]) == 2 and records["e"].recoveries == 1
    assert [r.acked for r in runs[ids["e"]]] == [False, True]
    # after_ack: ran once and is never run again
    assert len(runs[ids["a"]]) == 1 and records["a"].recoveries == 0
    assert faults.count == 3
    assert report.dup_exec == 1
    workers.stop_all()


def test_a4_pause_zombie(
    server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    pool = [workers.start(url) for _ in range(2)]
    workers.ready(app, *pool)
    task_id = str(app.add_task("work", "z", 2.0).uuid)
    first = wait_for(lambda: ledger.executions().get(task_id), 10, "the task to start")[0]
    zombie = next(w for w in pool if w.pid == first.pid)
    peer = next(w for w in pool if w is not zombie)
    wait_for(lambda: time.time() - first.start >= 0.2, 2, "0.2 s into the task")
    zombie.signal(signal.SIGSTOP)
    stopped = time.time()
    faults = Faults()
    faults.add_pid(zombie.pid)
    wait_for(lambda: len(ledger.executions()[task_id]) == 2, 10, "the peer to take the task")
    # Hold the zombie 3 s in all (3 leases): the fault itself.
    time.sleep(max(0.0, 3.0 - (time.time() - stopped)))
    zombie.signal(signal.SIGCONT)
    wait_for(lambda: settled(url, [task_id]), 10, "the final record")
    wait_for(lambda: "lease lost" in zombie.log(), 10, "the zombie to notice")
    report = check(url, [task_id], ledger, faults)
    chaos_result.checked(report, faults)
    report.assert_clean()
    runs = ledger.executions()[task_id]
    assert [r.pid for r in runs] == [zombie.pid, peer.pid]
    assert [r.acked for r in runs] == [False, True]  # the zombie's result was refused
    record = app.get(task_id)
    assert record.status == "success" and record.recoveries == 1
    assert str(peer.pid) in record.worker
    # The zombie carries on: alive, registered again, and alone it still runs tasks.
    assert zombie.alive()
    wait_for(lambda: zombie.pid in registered_pids(app), 10, "the zombie to beat again")
    peer.terminate()
    assert peer.wait(10) == 0
    more = [str(t.uuid) for t in app.add_tasks([("work", (f"m{i}", 0.01)) for i in range(5)])]
    wait_for(lambda: settled(url, more), 15, "tasks after the pause")
    assert {ledger.executions()[i][0].pid for i in more} == {zombie.pid}
    assert set(workers.stop_all().values()) == {0}


def test_a5_long_task_heartbeat(
    server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    timing = {"lease_timeout": 0.6, "heartbeat_interval": 0.15, "reaper_interval": 0.1}
    # The idle peer reaps every 0.1 s and would take the task the moment a lease lapsed.
    pool = [workers.start(url, **timing) for _ in range(2)]
    workers.ready(app, *pool)
    task_id = str(app.add_task("work", "long", 2.2).uuid)  # 3.7 leases
    wait_for(lambda: settled(url, [task_id]), 15, "the long task")
    report = check(url, [task_id], ledger)
    chaos_result.checked(report)
    report.assert_clean()
    assert report.dup_exec == 0
    assert app.get(task_id).recoveries == 0
    assert not any("lease lost" in w.log() or "recovered" in w.log() for w in pool)
    workers.stop_all()


def test_a6_sigterm_graceful(
    server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    client = admin(url)
    faults = Faults()
    # One worker (and queue) per part, started together: the parts then run one by one.
    wa = workers.start(url, queues="qa", max_tasks_process=4, prefetch=2, shutdown_grace=2.0)
    wb = workers.start(url, queues="qb", max_tasks_process=4, prefetch=2, shutdown_grace=0.1)
    wc = workers.start(url, queues="qc", max_tasks_process=4, prefetch=0, shutdown_grace=30.0)
    workers.ready(app, wa, wb, wc)

    def runs_of(worker: Any) -> list[Any]:
        return [r for rs in ledger.executions().values() for r in rs if r.pid == worker.pid]

    # (a) SIGTERM at 1 s: nothing starts after it, running tasks finish, exit 0 within grace.
    ids_a = enqueue_to(app, "qa", [("work", (f"a{i}", 0.2)) for i in range(200)])
    wait_for(lambda: runs_of(wa), 10, "the first start")
    time.sleep(1.0)  # one second of work before the signal: the scenario's timing
    wa.terminate()
    signalled = time.time()
    faults.add_pid(wa.pid)
    assert wa.wait(2.0 + 1.5) == 0
    exited = time.time() - signalled
    runs = runs_of(wa)
    assert all(r.start <= signalled + 0.1 for r in runs), "a task started after SIGTERM"
    assert all(r.acked for r in runs), "a running task was not finished within the grace"
    assert client.zcard("tq:lease") == 0
    done = sum(client.hget(f"tq:task:{i}", "status") == b"success" for i in ids_a)
    assert client.zcard("tq:q:qa") == 200 - done  # the rest (buffered ones too) is queued
    chaos_result.set(a_exit_seconds=round(exited, 2), a_done=done)

    # (b) grace 0.1 s: running tasks are handed back, and the process is gone in time.
    ids_b = enqueue_to(app, "qb", [("work", (f"b{i}", 1.0)) for i in range(8)])
    wait_for(lambda: len(runs_of(wb)) >= 4, 10, "four running tasks")
    wb.terminate()
    signalled = time.monotonic()
    faults.add_pid(wb.pid)
    assert wb.wait(5) == 0
    b_exit = time.monotonic() - signalled
    chaos_result.set(b_exit_seconds=round(b_exit, 2))
    assert b_exit < 0.1 + 0.5 + 0.5, b_exit  # grace + 0.5 s, plus the interpreter's exit
    assert client.zcard("tq:lease") == 0
    assert all(client.zscore("tq:q:qb", i) is not None for i in ids_b)

    # (c) a second SIGTERM: hand back at once and exit, however long the grace.
    ids_c = enqueue_to(app, "qc", [("work", (f"c{i}", 5.0)) for i in range(4)])
    wait_for(lambda: len(runs_of(wc)) == 4, 20, "four long tasks")
    wc.terminate()
    wait_for(lambda: "stopping" in wc.log(), 5, "the drain to begin")
    wc.terminate()
    signalled = time.monotonic()
    faults.add_pid(wc.pid)
    assert wc.wait(5) == 0
    c_exit = time.monotonic() - signalled
    chaos_result.set(c_exit_seconds=round(c_exit, 2))
    assert c_exit < 1.0, c_exit
    assert client.zcard("tq:lease") == 0
    assert all(client.zscore("tq:q:qc", i) is not None for i in ids_c)

    # Nothing was lost: a fresh worker drains everything that was handed back.
    drain = workers.start(url, "async", queues="qa,qb,qc", max_tasks_process=50)
    workers.ready(app, drain)
    ids = ids_a + ids_b + ids_c
    wait_for(lambda: settled(url, ids), 30, "the drain")
    report = check(url, ids, ledger, faults, queues=("qa", "qb", "qc"))
    chaos_result.checked(report, faults)
    report.assert_clean()
    assert set(workers.stop_all().values()) == {0}


def test_a7_racing_reapers(server: RedisServer, ledger: Ledger, chaos_result: Any) -> None:
    url = server.url
    timing = {"lease_timeout": 0.3, "heartbeat_interval": 0.1}
    apps = [producer(url, **timing) for _ in range(4)]
    owner = apps[0].broker
    envs = [owner.make_envelope("work", args=[f"o{i}"]) for i in range(100)]
    owner.add_many(envs)
    assert len(owner.claim("dead-owner", 100, 0.5, ["default"])) == 100
    client = admin(url)
    wait_for(
        lambda: client.zcount("tq:lease", "-inf", time.time() * 1000) == 100,
        5,
        "the 100 leases to lapse",
    )
    barrier = threading.Barrier(3)
    recovered: list[list[str]] = [[] for _ in range(3)]

    def reap(n: int) -> None:
        barrier.wait()
        found, dead = apps[n + 1].broker._reap()
        assert not dead
        recovered[n] = [task_id for task_id, _ in found]

    threads = [threading.Thread(target=reap, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    every = [task_id for batch in recovered for task_id in batch]
    ids = [env.id for env in envs]
    assert sorted(every) == sorted(ids), "an orphan was requeued twice or not at all"
    assert client.zcard("tq:q:default") == 100 and client.zcard("tq:lease") == 0
    recoveries = [int(client.hget(f"tq:task:{i}", "recoveries") or 0) for i in ids]
    assert recoveries == [1] * 100
    chaos_result.set(
        tasks=100,
        faults=1,
        reapers=3,
        recovered_per_reaper=[len(batch) for batch in recovered],
    )
