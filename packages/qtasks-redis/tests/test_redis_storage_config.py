"""Storage (records, waits, listings, TTLs) and GlobalConfig against a real redis-server."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
import redis
from redis_test_support import async_app, sync_app, wait_for

from qtasks.configs.memory import SyncMemoryGlobalConfig
from qtasks.exc import QueueFullError, SerializationError, TaskOptionError
from qtasks.redis import AsyncRedisGlobalConfig, SyncRedisGlobalConfig

NO_TTL_FAMILIES = (
    "q",
    "d",
    "wake",
    "queues",
    "seq",
    "epoch",
    "msg",
    "meta",
    "lease",
    "owner",
    "recov",
    "cancel",
    "finished",
    "dead",
    "idx",
)


@pytest.fixture
def admin(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_result_waiters_are_woken_by_the_final_write_not_a_timer(redis_url: str) -> None:
    # block_timeout 1.9 s: a waiter that polled would see the result up to 1.9 s late.
    app = sync_app(redis_url, block_timeout=1.9, socket_timeout=2.0)
    broker = app.broker
    env = broker.make_envelope("t", args=[1])
    broker.add_many([env])
    (delivery,) = broker.claim("w", 1, 0.1, ["default"])
    woken: list[float] = []

    def wait() -> None:
        task = app.wait(env.id, 5)
        assert task is not None and task.status == "success"
        woken.append(time.monotonic())

    waiters = [threading.Thread(target=wait) for _ in range(3)]
    for thread in waiters:
        thread.start()
    time.sleep(0.3)  # the waiters are blocked now: that is the scenario
    written = time.monotonic()
    record = app.get(env.id).evolve(status="success", returning=2)
    assert broker.remove_finished_task(delivery, record)
    for thread in waiters:
        thread.join(5)
    assert len(woken) == 3
    assert max(woken) - written < 0.2, [w - written for w in woken]


def test_every_key_is_a_queue_an_index_or_expires(redis_url: str, admin: redis.Redis) -> None:
    app = sync_app(redis_url, result_ttl=120.0)

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    with app:
        tasks = app.add_tasks([("ok", (i,)) for i in range(20)])
        for task in tasks:
            assert app.wait(task.uuid, 10).status == "success"
    for key in admin.scan_iter("QueueTasks:*"):
        name = key.decode()
        family = name.split(":")[1]
        ttl = admin.pttl(key)
        if family in NO_TTL_FAMILIES:
            continue
        assert family not in ("task", "done") or 0 < ttl <= 120_000, (name, ttl)
        assert ttl > 0 or name.startswith("QueueTasks:GlobalConfig~names"), (name, ttl)
    assert admin.zcard("QueueTasks:lease") == 0 and admin.hlen("QueueTasks:msg") == 0


def test_listings_counts_and_delete_finished(redis_url: str) -> None:
    app = sync_app(redis_url)
    broker, storage = app.broker, app.broker.storage
    envs = [broker.make_envelope(name, args=[i]) for i, name in enumerate("aabbc")]
    broker.add_many(envs)
    done = broker.claim("w", 2, 0.1, ["default"])
    for delivery in done:
        record = storage.get(delivery.envelope.id).evolve(status="success")
        assert broker.remove_finished_task(delivery, record)
        time.sleep(0.005)  # finished records are ordered by millisecond
    assert storage.counts() == {"new": 3, "success": 2}
    assert [t.args for t in storage.list(status="success")] == [(1,), (0,)]  # newest first
    assert [t.args for t in storage.list(task_name="b")] == [(3,), (2,)]
    assert [t.args for t in storage.list(task_name="a", status="new")] == []
    assert len(storage.list(limit=2, offset=1)) == 2
    assert len(storage.get_all()) == 5
    assert storage.delete_finished_tasks() == 2
    assert storage.counts() == {"new": 3}
    assert len(storage.get_all()) == 3
    # Their task name's index too (before, "a" kept both entries: with no TTL, for good).
    admin = redis.Redis.from_url(redis_url)
    assert admin.zcard("QueueTasks:idx:name:a") == 0


def test_purged_tasks_leave_their_name_index_as_finished(
    redis_url: str, admin: redis.Redis
) -> None:
    app = sync_app(redis_url)
    broker, storage = app.broker, app.broker.storage
    broker.add_many([broker.make_envelope("work", args=[i]) for i in range(3)])
    assert broker.purge_queue("default") == 3
    # Finish times are Redis' milliseconds; a tie would be ordered by the random ids.
    purged_at = _redis_ms(admin)
    while _redis_ms(admin) == purged_at:
        pass
    (later,) = broker.add_many([broker.make_envelope("work", args=[9])])
    (delivery,) = broker.claim("w", 1, 0.1, ["default"])
    assert broker.remove_finished_task(delivery, storage.get(later.uuid).evolve(status="success"))
    # Finished records are listed most recently finished first: the later success before the
    # purged (cancelled) ones. Before, those kept a live score in the name index, and were
    # listed first, as running, until their records expired (and counted after that).
    listed = storage.list(task_name="work")
    assert [t.status for t in listed] == ["success", "cancel", "cancel", "cancel"]


def _redis_ms(admin: redis.Redis) -> int:
    seconds, micros = admin.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_an_update_never_reopens_a_final_record(redis_url: str) -> None:
    app = sync_app(redis_url)
    storage = app.broker.storage
    env = app.broker.make_envelope("t")
    app.broker.add_many([env])
    storage.update(name=env.id, mapping={"status": "success"})
    storage.update(name=env.id, mapping={"status": "process", "worker": "late"})  # a zombie
    record = storage.get(env.id)
    assert record.status == "success" and record.worker is None
    storage.update(name="missing", mapping={"status": "process"})
    assert storage.get("missing") is None  # an update creates nothing


def test_global_config_values_ttls_and_only_new(redis_url: str, admin: redis.Redis) -> None:
    config = SyncRedisGlobalConfig(name="QueueTasks", url=redis_url)
    config.set("settings", "limit", {"n": 3})
    config.set("settings", "user:1", "alice")
    config.set("settings", "user:2", "bob")
    assert config.get("settings", "limit") == {"n": 3}
    assert config.get_all("settings") == {"limit": {"n": 3}, "user:1": "alice", "user:2": "bob"}
    assert config.get_match("user:*") == {} and config.config_name == "GlobalConfig"
    config.set("GlobalConfig", "user:1", "alice")
    assert config.get_match("user:*") == {"user:1": "alice"}
    assert admin.hget("QueueTasks:GlobalConfig:settings", "user:1") == b'"alice"'  # 1.7 layout
    assert admin.pttl("QueueTasks:GlobalConfig:settings") == -1
    # only-new with a TTL: what timers use to enqueue a tick once across replicas
    assert config.set_nx("ticks", "t1", 1, ttl=0.3) is True
    assert config.set_nx("ticks", "t1", 2, ttl=0.3) is False
    assert 0 < admin.pttl("QueueTasks:GlobalConfig:ticks") <= 300  # every key has a TTL
    wait_for(lambda: not config.get_all("ticks"), 3, "the tick mark to expire")
    assert config.set_nx("ticks", "t1", 3, ttl=0.3) is True
    config.delete("settings", "limit")
    assert "limit" not in config.get_all("settings")


@pytest.mark.parametrize("where", ["memory", "redis"])
def test_global_config_reads_back_the_same_in_memory_and_in_redis(
    where: str, redis_url: str
) -> None:
    config: Any = (
        SyncMemoryGlobalConfig(name=f"gc-{uuid.uuid4().hex[:8]}")
        if where == "memory"
        else SyncRedisGlobalConfig(name="QueueTasks", url=redis_url)
    )
    # Before, the in-memory one returned the objects as given, and Redis their JSON.
    config.set("s", "pair", (1, 2))
    assert config.get("s", "pair") == [1, 2]
    config.set("s", "by_int", {1: "a"})
    assert config.get("s", "by_int") == {"1": "a"}
    config.set("s", 7, "seven")
    assert config.get("s", "7") == "seven"
    value = {"n": 1}
    config.set("s", "mutable", value)
    value["n"] = 2
    config.get("s", "mutable")["n"] = 99
    assert config.get("s", "mutable") == {"n": 1}
    # Before, Redis stored str(value) and the in-memory one the object.
    for bad in ({1}, b"ab", datetime.now(), float("nan")):
        with pytest.raises(SerializationError):
            config.set("s", "bad", bad)
        with pytest.raises(SerializationError):
            config.set_nx("s", "bad", bad, ttl=5)
    assert "bad" not in config.get_all("s")
    # A TTL that is not a positive number: before, at once in memory and 1 ms in Redis.
    for ttl in (0, -1, float("inf"), "5"):
        with pytest.raises(TaskOptionError):
            config.set_nx("s", "ttl", 1, ttl=ttl)
    assert "ttl" not in config.get_all("s")


def test_a_config_starts_while_redis_is_out_of_memory(
    redis_url: str, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker starts and drains during OOM (chaos B7): the running status its config writes
    at start waits for the periodic heartbeat; a caller's own write is still refused."""
    config = SyncRedisGlobalConfig(name="QueueTasks", url=redis_url)
    admin.config_set("maxmemory", 1)  # below what Redis already uses: every new write is refused
    try:
        with caplog.at_level(logging.WARNING, logger="qtasks"):
            config.start()
        assert "running status not written at start" in caplog.text
        assert "out of memory" in caplog.text
        with pytest.raises(QueueFullError):
            config.set("settings", "limit", 1)
    finally:
        admin.config_set("maxmemory", 0)
    config.heartbeat()
    assert config.is_running()
    config.stop()


def test_running_status_and_worker_registry(redis_url: str, admin: redis.Redis) -> None:
    app = sync_app(redis_url, lease_timeout=1.0, heartbeat_interval=0.2)
    assert app.ping() is False
    with app:
        assert app.ping() is True
        workers = app.broker.storage.global_config.get_all("workers")
        assert list(workers) == [app.worker.worker_id]
        info = workers[app.worker.worker_id]
        assert info["pid"] > 0 and info["host"] and info["concurrency"] == 10
        assert 0 < admin.pttl("QueueTasks:GlobalConfig:workers") <= 1000
    assert app.ping() is False
    assert app.broker.storage.global_config.get_all("workers") == {}


async def test_async_components_round_trip(redis_url: str) -> None:
    app = async_app(redis_url)

    @app.task(name="double")
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async with app:
        task = await app.add_task("double", 21, timeout=5)
        assert task is not None and task.status == "success" and task.returning == 42
        many = await app.add_tasks([("double", (i,)) for i in range(50)])
        results = await asyncio.gather(*(app.wait(t.uuid, 5) for t in many))
        assert [r.returning for r in results] == [2 * i for i in range(50)]
        assert (await app.broker.storage.counts())["success"] == 51
        assert (await app.broker.stats())["finished_last_minute"] == 51
        config = app.broker.storage.global_config
        assert isinstance(config, AsyncRedisGlobalConfig)
        await config.set("settings", "k", [1, 2])
        assert await config.get("settings", "k") == [1, 2]
