"""Worker processes against a real redis-server: SIGKILL, long tasks, two workers, restarts.

Evidence comes from the ledger the task bodies append to (outside Redis) and from the records.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_test_support import Ledger, registered_pids, sync_app, wait_for

from qtasks.testing import RedisServer
from qtasks.testing.pytest_plugin import redis_binary_or_skip

pytestmark = pytest.mark.chaos

FAST = {
    "lease_timeout": 1.0,
    "heartbeat_interval": 0.2,
    "reaper_interval": 0.2,
    "block_timeout": 0.5,
    "socket_timeout": 2.0,
}


def producer(url: str) -> Any:
    return sync_app(url, enqueue_unknown_tasks=True, socket_timeout=2.0, block_timeout=1.0)


def pid_of(worker_id: str) -> int:
    return int(worker_id.split(":")[1])


def test_sigkilled_worker_only_running_tasks_run_again(
    redis_url: str, ledger: Ledger, workers: Any
) -> None:
    app = producer(redis_url)
    first = workers(redis_url, ledger, max_tasks_process=4, prefetch=2, **FAST)
    wait_for(lambda: first.pid in registered_pids(app), 20, "the first worker to start")
    tasks = app.add_tasks([("work", (f"k{i}", 0.3)) for i in range(30)])
    wait_for(lambda: ledger.count("start") >= 4, 10, "the first tasks to start")
    first.kill9()
    ended_before = set(ledger.ends())
    running_at_kill = set(ledger.starts()) - ended_before
    assert running_at_kill  # the kill hit running tasks: the scenario under test

    second = workers(redis_url, ledger, max_tasks_process=4, prefetch=2, **FAST)
    records = [app.wait(task.uuid, 40) for task in tasks]
    assert all(r is not None and r.status == "success" for r in records)

    starts, ends = ledger.starts(), ledger.ends()
    for record in records:
        key = record.args[0]
        assert record.returning == key
        if key in running_at_kill:
            assert starts[key] == [first.pid, second.pid], key
            assert record.recoveries >= 1
        else:
            assert len(starts[key]) == 1, (key, starts[key])  # prefetched or later: once
        # one final record, written by the process whose run completed
        assert ends[key][-1] == pid_of(record.worker)
    assert set(ends) == {r.args[0] for r in records}
    assert not ended_before & {k for k, pids in starts.items() if len(pids) > 1}
    assert second.terminate() == 0
    # at rest nothing is held or queued, and the killed worker left nothing without a TTL
    admin = redis.Redis.from_url(redis_url)
    for key in ("QueueTasks:lease", "QueueTasks:owner", "QueueTasks:msg", "QueueTasks:meta"):
        assert not admin.exists(key), key
    for key in admin.scan_iter("QueueTasks:*"):
        family = key.decode().split(":")[1]
        assert family not in ("claim", "ack", "int", "task", "done") or admin.pttl(key) > 0, key


def test_task_longer_than_three_leases_runs_once_while_its_worker_lives(
    redis_url: str, ledger: Ledger, workers: Any
) -> None:
    config = {
        "lease_timeout": 0.6,
        "heartbeat_interval": 0.15,
        "reaper_interval": 0.1,
        "block_timeout": 0.3,
        "socket_timeout": 2.0,
    }
    app = producer(redis_url)
    # Two workers: the idle one reaps every 0.1 s and would take the task if a lease lapsed.
    pool = [workers(redis_url, ledger, **config), workers(redis_url, ledger, **config)]
    wait_for(lambda: {p.pid for p in pool} <= registered_pids(app), 20, "both workers")
    long_task = app.add_task("work", "long", 2.2)  # 3.7 leases
    others = app.add_tasks([("work", (f"s{i}", 0.05)) for i in range(10)])
    record = app.wait(long_task.uuid, 20)
    assert record is not None and record.status == "success"
    assert len(ledger.starts()["long"]) == 1
    assert record.recoveries == 0
    assert all(app.wait(t.uuid, 10).status == "success" for t in others)
    assert not any("lease lost" in p.log() for p in pool)


def test_two_worker_processes_run_1000_mixed_priority_tasks_once(
    redis_url: str, ledger: Ledger, workers: Any
) -> None:
    app = producer(redis_url)
    pool = [
        workers(redis_url, ledger, max_tasks_process=8, **FAST),
        workers(redis_url, ledger, flavour="async", max_tasks_process=20, **FAST),
    ]
    wait_for(lambda: {p.pid for p in pool} <= registered_pids(app), 20, "both workers")
    rng = random.Random(7)
    calls = [
        ("work", (f"t{i}", rng.choice((0.0, 0.002, 0.005))), {}, rng.randint(0, 9))
        for i in range(1000)
    ]
    tasks = app.add_tasks(calls)  # one round trip
    records = [app.wait(task.uuid, 60) for task in tasks]
    assert all(r is not None and r.status == "success" for r in records)
    starts, ends = ledger.starts(), ledger.ends()
    assert len(starts) == 1000 and len(ends) == 1000
    assert all(len(pids) == 1 for pids in starts.values())
    assert {pid for pids in starts.values() for pid in pids} == {p.pid for p in pool}
    stats = app.broker.stats()
    assert stats["processing"] == 0 and stats["queues"] == {} and stats["dead"] == 0
    assert not any("lease lost" in p.log() for p in pool)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_worker_survives_a_redis_restart_with_aof_and_finishes_the_queue(
    flavour: str, tmp_path: Path, ledger: Ledger, workers: Any
) -> None:
    config = {
        "lease_timeout": 6.0,
        "heartbeat_interval": 0.2,
        "reaper_interval": 0.5,
        "block_timeout": 0.5,
        "socket_timeout": 1.0,
        "max_tasks_process": 4,
    }
    with RedisServer(
        appendonly=True, binary=redis_binary_or_skip(), dir=tmp_path / "redis"
    ) as server:
        app = producer(server.url)
        worker = workers(server.url, ledger, flavour=flavour, **config)
        wait_for(lambda: worker.pid in registered_pids(app), 20, "the worker to start")
        tasks = app.add_tasks([("work", (f"r{i}", 0.01)) for i in range(200)])
        wait_for(lambda: ledger.count("end") >= 60, 20, "a third of the queue")
        server.kill9()
        in_flight = set(ledger.starts())  # a superset of what ran at the crash
        wait_for(lambda: "Redis unreachable" in worker.log(), 10, "the worker to notice")
        time.sleep(1.0)  # the outage window (the fault itself, not a wait for an event)
        server.restart()  # same port and dir: the AOF brings the queue back
        records = [app.wait(task.uuid, 40) for task in tasks]
        assert all(r is not None and r.status == "success" for r in records)
        assert worker.proc.poll() is None  # the same process finished the queue
        starts = ledger.starts()
        assert set(starts) == {f"r{i}" for i in range(200)}
        assert all(len(pids) == 1 or key in in_flight for key, pids in starts.items())
        assert {pid for pids in starts.values() for pid in pids} == {worker.pid}
        assert "Redis reachable again" in worker.log()
        assert worker.terminate() == 0


def test_cancel_reaches_a_task_running_in_another_process(
    redis_url: str, ledger: Ledger, workers: Any
) -> None:
    app = producer(redis_url)
    worker = workers(redis_url, ledger, flavour="async", **FAST)
    wait_for(lambda: worker.pid in registered_pids(app), 20, "the worker to start")
    task = app.add_task("work", "victim", 30.0)
    wait_for(lambda: "victim" in ledger.starts(), 10, "the task to start")
    assert app.cancel(task.uuid, "enough") == "signalled"  # published on {p}:cancel
    record = app.wait(task.uuid, 10)
    assert record is not None and record.status == "cancel"
    assert record.cancel_reason == "enough"
    assert "victim" not in ledger.ends()
    assert worker.terminate() == 0
