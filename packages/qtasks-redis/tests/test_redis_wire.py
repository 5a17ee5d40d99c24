"""The asyncio client's quick paths (`_wire.py`): pool checkouts and writes that skip redis-py's
machinery must keep its guarantees: a connection per concurrent caller, waiters served, stale
connections repaired, large writes drained."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from qtasks.redis._wire import QuickPool
from qtasks.redis.connection import POOL_SIZE, build_client


def _pool(client: Any) -> QuickPool:
    pool = client.connection_pool
    assert isinstance(pool, QuickPool)
    return pool


async def test_sequential_calls_reuse_one_connection(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, 5.0)
    try:
        for i in range(50):
            await client.set("k", i)
        assert int(await client.get("k")) == 49
        pool = _pool(client)
        assert len(pool._available_connections) == 1
        assert not pool._in_use_connections
    finally:
        await client.aclose()


async def test_callers_beyond_the_pool_size_wait_and_all_finish(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, 5.0)
    try:
        n = POOL_SIZE * 3
        # BLPOP holds each connection for a while, so later callers must queue for one.
        replies = await asyncio.gather(
            *(client.blpop([f"none:{i}"], timeout=0.05) for i in range(n)),
            *(client.incr("counter") for _ in range(n)),
        )
        assert replies[:n] == [None] * n
        assert int(await client.get("counter")) == n
        pool = _pool(client)
        assert not pool._in_use_connections
        assert pool._queued == 0
        assert len(pool._available_connections) <= POOL_SIZE
    finally:
        await client.aclose()


async def test_a_killed_connection_is_replaced(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, 5.0)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        await client.client_setname("quick")
        assert await client.ping()
        killed = admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        # The pooled connection is dead: the next calls reconnect (redis-py's retry) and work.
        for i in range(5):
            assert await client.incr("after") == i + 1
    finally:
        await client.aclose()
        admin.close()


async def test_a_cancelled_call_does_not_leave_its_reply_to_the_next(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, 5.0)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        await client.ping()
        waiting = asyncio.ensure_future(client.blpop(["late"], timeout=2))
        while not any(c.get("cmd") == "blpop" for c in admin.client_list()):
            await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        # Its reply arrives after the cancel; whoever gets that connection next must not see it.
        admin.rpush("late", "stale")
        for i in range(5):
            assert await client.echo(f"mine{i}") == f"mine{i}".encode()
    finally:
        await client.aclose()
        admin.close()


async def test_a_write_larger_than_the_socket_buffer_is_drained(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, 5.0)
    try:
        value = b"x" * (8 * 1024 * 1024)
        await client.set("big", value)
        assert await client.strlen("big") == len(value)
        assert await client.get("big") == value
    finally:
        await client.aclose()


async def test_script_calls_survive_a_script_flush_and_a_killed_connection(
    redis_server: Any,
) -> None:
    # The asyncio app's scripts run straight on a pooled connection (`_script.py`).
    from qtasks.asyncio import QueueTasks
    from qtasks.redis._script import AsyncScriptCall

    app = QueueTasks(name="wire-scripts", broker_url=redis_server.url)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        first = await app.add_task("t", 1)
        assert isinstance(app.broker.connection.script(5.0, "ENQUEUE"), AsyncScriptCall)
        admin.script_flush()  # NOSCRIPT on the next call: loaded again, the call re-run
        second = await app.add_task("t", 2)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        third = await app.add_task("t", 3)  # the pooled connection is dead: one retry
        records = [await app.get(t.uuid) for t in (first, second, third)]
        assert [(r.status, r.args) for r in records] == [("new", (n,)) for n in (1, 2, 3)]
    finally:
        admin.close()


async def test_an_error_reply_leaves_the_connection_usable(redis_server: Any) -> None:
    from qtasks.asyncio import QueueTasks
    from qtasks.exc import QueueFullError

    app = QueueTasks(name="wire-oom", broker_url=redis_server.url)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        await app.add_task("t", 0)
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", str(used))
        admin.config_set("maxmemory-policy", "noeviction")
        with pytest.raises(QueueFullError):
            await app.add_task("t", "x" * 200_000)
        admin.config_set("maxmemory", "0")
        task = await app.add_task("t", 1)  # same pooled connection, still in step
        assert (await app.get(task.uuid)).args == (1,)
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
