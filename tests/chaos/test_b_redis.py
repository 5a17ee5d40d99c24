"""B. Redis faults (reliability.md section 7): the server dies, restarts empty, stalls, drops
clients, sits behind a faulty network, runs out of memory or would evict keys."""

from __future__ import annotations

import random
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from chaos_proxy import FaultProxy
from chaos_support import (
    Faults,
    Ledger,
    admin,
    check,
    final_count,
    producer,
    settled,
    wait_for,
)

from qtasks.configs.config import QueueConfig
from qtasks.exc import BrokerError, ConfigError, QueueFullError
from qtasks.testing import RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

PROBLEMS = re.compile(r" (WARNING|ERROR|CRITICAL) ")


def problems(text: str) -> list[str]:
    return [line for line in text.splitlines() if PROBLEMS.search(line)]


def first_ack_after(ledger: Ledger, pid: int, since: float) -> float | None:
    """When worker `pid` first wrote a final record after `since` (None: not yet)."""
    times = [e.at for e in ledger.events() if e.kind == "ack" and e.pid == pid and e.at > since]
    return min(times) if times else None


def acked_after(ledger: Ledger, pid: int, since: float) -> bool:
    return first_ack_after(ledger, pid, since) is not None


def enqueue(app: Any, prefix: str, n: int, rng: random.Random, lo: float, hi: float) -> list[str]:
    calls = [("work", (f"{prefix}{i}", round(rng.uniform(lo, hi), 4))) for i in range(n)]
    return [str(task.uuid) for task in app.add_tasks(calls)]


def test_b1_redis_kill9_aof(
    redis_factory: Callable[..., RedisServer],
    workers: Any,
    ledger: Ledger,
    rng: random.Random,
    chaos_result: Any,
) -> None:
    server = redis_factory(appendonly=True)
    url = server.url
    app = producer(url)
    pool = [workers.start(url, "sync", max_tasks_process=4), workers.start(url, "async")]
    workers.ready(app, *pool)
    ids = enqueue(app, "k", 2000, rng, 0.0, 0.005)
    wait_for(lambda: final_count(url) >= 800, 60, "40% of the tasks")
    server.kill9()
    down = time.time()
    # I5: a producer fails fast and typed while Redis is down.
    start = time.monotonic()
    with pytest.raises(BrokerError):
        app.add_task("work", "during-outage")
    refused_in = time.monotonic() - start
    assert refused_in < 1.0 * 2 + 0.5, refused_in  # socket timeout, one retry, backoff cap
    time.sleep(max(0.0, 1.0 - (time.time() - down)))  # the outage itself
    server.restart()  # same port and dir: the AOF brings everything back
    up = time.time()
    faults = Faults()
    faults.add_window(down, up)
    wait_for(
        lambda: all(acked_after(ledger, w.pid, up) for w in pool), 10, "both workers to resume"
    )
    resumed = max(first_ack_after(ledger, w.pid, up) or 0.0 for w in pool)
    wait_for(lambda: settled(url, ids), 60, "every task to settle")
    report = check(url, ids, ledger, faults)
    chaos_result.checked(report, faults)
    chaos_result.set(producer_refused_in=round(refused_in, 2), resumed_in=round(resumed - up, 2))
    report.assert_clean()
    assert all(w.alive() for w in pool)  # the same processes rode out the outage
    assert resumed - up < 2.5, resumed - up
    assert set(workers.stop_all().values()) == {0}


def test_b2_redis_restart_empty(
    server: RedisServer, workers: Any, ledger: Ledger, rng: random.Random, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    pool = [workers.start(url, "sync"), workers.start(url, "async")]
    workers.ready(app, *pool)
    before = enqueue(app, "a", 50, rng, 0.0, 0.005)
    wait_for(lambda: settled(url, before), 20, "the first tasks")
    marks = [len(w.log()) for w in pool]
    down = time.time()
    server.kill9()
    time.sleep(1.0)  # the outage itself
    server.start()  # same port; nothing was persisted, so Redis comes back empty
    up = time.time()
    wait_for(
        lambda: all("data loss" in w.log()[m:] for w, m in zip(pool, marks, strict=True)),
        10,
        "each worker to notice the data loss",
    )
    # New work flows through the same processes.
    after = enqueue(app, "b", 50, rng, 0.0, 0.005)
    wait_for(lambda: settled(url, after), 20, "tasks after the restart")
    faults = Faults()
    faults.add_window(down, up)
    report = check(url, after, ledger, faults)
    chaos_result.checked(report, faults)
    report.assert_clean()
    logs = [w.log()[m:] for w, m in zip(pool, marks, strict=True)]
    losses = [[line for line in problems(log) if "data loss" in line] for log in logs]
    chaos_result.set(problem_lines=[len(problems(log)) for log in logs], tasks_lost_to_wipe=0)
    assert [len(found) for found in losses] == [1, 1], losses
    assert all(" ERROR " in found[0] for found in losses)
    for log in logs:  # an outage is a handful of lines, not one per call or per beat
        assert len(problems(log)) <= 8, problems(log)
    assert all(w.alive() for w in pool)
    assert set(workers.stop_all().values()) == {0}


def test_b3_client_kill_storm(
    server: RedisServer, workers: Any, ledger: Ledger, rng: random.Random, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    pool = [workers.start(url, "sync", max_tasks_process=4), workers.start(url, "async")]
    workers.ready(app, *pool)
    ids = enqueue(app, "k", 1000, rng, 0.005, 0.03)
    client = admin(url)
    storm_start = time.time()
    kills = 0
    while time.time() - storm_start < 3.0:
        killed = client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        kills += 1
        chaos_result.set(clients_killed=chaos_result.data.get("clients_killed", 0) + killed)
        time.sleep(0.2)  # the storm's period
    storm_end = time.time()
    faults = Faults(windows=[(storm_start, storm_end)], count=kills)
    wait_for(lambda: settled(url, ids), 60, "every task to settle")
    wait_for(
        lambda: (
            all(acked_after(ledger, w.pid, storm_end) for w in pool) or final_count(url) >= 1000
        ),
        10,
        "work after the storm",
    )
    report = check(url, ids, ledger, faults)
    chaos_result.checked(report, faults)
    report.assert_clean()
    assert all(w.alive() for w in pool)
    # No blocked call was left hanging: every worker is back on its idle wait, and answers.
    more = enqueue(app, "m", 20, rng, 0.0, 0.001)
    wait_for(lambda: settled(url, more), 10, "tasks after the storm")
    assert set(workers.stop_all().values()) == {0}


def test_b4_server_stall(
    server: RedisServer, workers: Any, ledger: Ledger, rng: random.Random, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    pool = [workers.start(url, "sync", max_tasks_process=4), workers.start(url, "async")]
    workers.ready(app, *pool)
    ids = enqueue(app, "k", 600, rng, 0.03, 0.07)
    wait_for(lambda: final_count(url) >= 50, 20, "work under way")
    faults = Faults()

    def raw(*args: str) -> None:
        # A connection of its own, with no socket timeout: DEBUG SLEEP holds it for 3 s.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            payload = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
            sock.sendall(payload.encode())
            assert sock.recv(64).startswith(b"+OK")

    start = time.time()
    raw("DEBUG", "SLEEP", "3")
    faults.add_window(start, time.time())
    start = time.time()
    raw("CLIENT", "PAUSE", "3000", "WRITE")
    wait_for(lambda: time.time() - start > 3.0, 5, "the write pause to end")
    healed = time.time()
    faults.add_window(start, healed)

    def beats_resumed() -> bool:
        registry = app.broker.storage.global_config.get_all("workers")
        beats = {int(i["pid"]): float(i["heartbeat"]) for i in registry.values()}
        return all(beats.get(w.pid, 0) > healed for w in pool)

    wait_for(beats_resumed, 3, "heartbeats after the stall")
    chaos_result.set(beats_resumed_in=round(time.time() - healed, 2))
    wait_for(lambda: settled(url, ids), 60, "every task to settle")
    report = check(url, ids, ledger, faults)
    chaos_result.checked(report, faults)
    report.assert_clean()
    runs = ledger.executions()
    assert max(len(r) for r in runs.values()) <= 2, "a task ran three times"
    assert time.time() - healed < 60
    assert all(w.alive() for w in pool)
    assert set(workers.stop_all().values()) == {0}


def test_b5_proxy_faults(
    server: RedisServer, workers: Any, ledger: Ledger, rng: random.Random, chaos_result: Any
) -> None:
    with FaultProxy(server.port, seed=rng.randrange(10**6)) as proxy:
        via = f"redis://127.0.0.1:{proxy.port}/0"
        url = server.url
        app = producer(url)
        through = producer(via)
        pool = [workers.start(via, "sync", max_tasks_process=4), workers.start(via, "async")]
        workers.ready(app, *pool)
        ids = enqueue(app, "k", 600, rng, 0.01, 0.03)
        faults = Faults()
        start = time.time()
        proxy.delay(0.2)
        wait_for(lambda: time.time() - start > 1.5, 3, "1.5 s of 200 ms latency")
        faults.add_window(start, time.time())
        start = time.time()
        proxy.blackhole()
        began = time.monotonic()
        with pytest.raises(BrokerError):
            through.add_task("work", "into-the-void")
        blocked = time.monotonic() - began
        assert blocked < 2 * 1.0 + 0.5 + 0.5, blocked  # two socket timeouts and the backoff
        wait_for(lambda: time.time() - start > 3.0, 5, "3 s of blackhole")
        proxy.reset()
        proxy.heal()
        healed = time.time()
        faults.add_window(start, healed)
        wait_for(
            lambda: all(acked_after(ledger, w.pid, healed) for w in pool),
            10,
            "both workers to recover",
        )
        recovered = max(first_ack_after(ledger, w.pid, healed) or 0.0 for w in pool)
        wait_for(lambda: settled(url, ids), 60, "every task to settle")
        report = check(url, ids, ledger, faults)
        chaos_result.checked(report, faults)
        chaos_result.set(
            producer_blocked_for=round(blocked, 2), recovered_in=round(recovered - healed, 2)
        )
        report.assert_clean()
        assert recovered - healed < 2.0 + 0.5, recovered - healed
        assert all(w.alive() for w in pool)
        assert set(workers.stop_all().values()) == {0}


def test_b6_idle_block_vs_socket_timeout(
    server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    app = producer(url)
    worker = workers.start(url, socket_timeout=1.0, block_timeout=0.9)
    workers.ready(app, worker)
    mark = len(worker.log())
    time.sleep(3.0)  # idle longer than the socket timeout: the scenario itself
    sent = time.time()
    task_id = str(app.add_task("work", "wake").uuid)
    wait_for(lambda: settled(url, [task_id]), 5, "the task")
    picked = ledger.executions()[task_id][0].start - sent
    chaos_result.set(tasks=1, pickup_ms=round(picked * 1000, 1))
    assert picked < 0.3, picked  # woken, not the 0.9 s block running out
    idle_log = worker.log()[mark:]
    assert "Timeout" not in idle_log and not problems(idle_log), idle_log
    # The redis-py 8 trap is refused where it is configured.
    with pytest.raises(ConfigError, match="block_timeout"):
        QueueConfig(block_timeout=1.0, socket_timeout=1.0)
    bad = workers.start(url, socket_timeout=1.0, block_timeout=2.0)
    assert bad.wait(30) != 0
    assert "block_timeout" in bad.log()
    assert set(workers.stop_all().values()) == {0}


def test_b7_oom_backpressure(
    server: RedisServer, workers: Any, ledger: Ledger, chaos_result: Any
) -> None:
    url = server.url
    client = admin(url)
    app = producer(url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", max(4 * 1024 * 1024, used + 3 * 1024 * 1024))
    blob = "x" * 100_000
    accepted: list[str] = []
    with pytest.raises(QueueFullError):
        for i in range(200):
            accepted.append(str(app.add_task("work", f"o{i} {blob}").uuid))
    assert accepted
    # No half-written job: every queue entry has its payload and its record, and no more.
    queued = client.zcard("tq:q:default")
    assert queued == len(accepted) == client.hlen("tq:msg") == client.zcard("tq:idx:status:new")
    # A worker starts and drains while Redis is still out of memory.
    worker = workers.start(url, result_ttl=1.0)
    workers.ready(app, worker)
    # Records expire a second after they are written (result_ttl), so the ledger tells.
    wait_for(lambda: ledger.ids("ack") >= set(accepted), 30, "the drain under OOM")
    # Finished records expire (result_ttl 1 s), memory comes back, and enqueue recovers.
    recovered = wait_for(lambda: try_enqueue(app, blob), 15, "enqueue to recover")
    wait_for(lambda: recovered in ledger.ids("ack"), 10, "the task after recovery")
    report = check(url, [*accepted, recovered], ledger)
    # Records expire a second after they are written: expired ones are done (acked above).
    report.lost = [i for i in report.lost if client.exists(f"tq:task:{i}")]
    expired = report.placement.pop("nowhere", 0)
    report.misplaced = [m for m in report.misplaced if not m.endswith(":nowhere")]
    report.placement["expired after result_ttl"] = expired
    chaos_result.checked(report)
    chaos_result.set(faults=1, accepted_before_oom=len(accepted))
    assert not report.lost and not report.dup_records and report.dup_exec == 0
    assert ledger.ids("ack") >= set(accepted)
    assert worker.alive()
    assert set(workers.stop_all().values()) == {0}


def try_enqueue(app: Any, blob: str) -> str | None:
    try:
        return str(app.add_task("work", f"after {blob}").uuid)
    except QueueFullError:
        return None


def test_b8_eviction_policy_guard(
    redis_factory: Callable[..., RedisServer], workers: Any, chaos_result: Any
) -> None:
    server = redis_factory(extra_args=["--maxmemory-policy", "allkeys-lru"])
    url = server.url
    app = producer(url)
    refused = workers.start(url)
    assert refused.wait(30) != 0
    log = refused.log()
    assert "maxmemory-policy" in log and "allkeys-lru" in log and "noeviction" in log, log
    assert "Traceback" not in log  # a clear message, not a crash
    # The flag turns the refusal into one warning.
    allowed = workers.start(url, allow_eviction=True)
    workers.ready(app, allowed)
    assert [line for line in problems(allowed.log()) if "maxmemory-policy" in line]
    task_id = str(app.add_task("work", "ok").uuid)
    wait_for(lambda: settled(url, [task_id]), 10, "a task")
    chaos_result.set(tasks=1, faults=1)
    assert set(workers.stop_all().values()) == {0}
