"""The clients' quick paths (`_wire.py`, `_script.py`, `_stream.py`): pool checkouts, writes and
script calls that skip redis-py's machinery must keep its guarantees: a connection per
concurrent caller, waiters served, stale connections repaired, large writes drained, scripts
reloaded."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from redis_test_support import quick_only, wait_for

from qtasks.redis._script import ScriptCall
from qtasks.redis._wire import QUICK, QuickPool, QuickSyncPool
from qtasks.redis.connection import POOL_SIZE, build_client


def _pool(client: Any) -> QuickPool:
    pool = client.connection_pool
    assert isinstance(pool, QuickPool) or not QUICK
    return pool  # type: ignore[no-any-return]


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


@quick_only
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


async def _release_with_unread_reply(pool: QuickPool) -> Any:
    """Put back a connection whose reply nobody read (a call cut between send and reply)."""
    stale = await pool.get_connection()
    await stale.send_command("ECHO", "stale")  # its reply is never read
    # redis-py before 8.1 names the test `can_read_destructive` (it buffers what it finds).
    can_read = getattr(stale, "can_read", None) or stale.can_read_destructive
    for _ in range(500):  # until the reply is in (an event: the stream has bytes)
        if await can_read():
            break
        await asyncio.sleep(0.01)
    await pool.release(stale)
    return stale


async def test_a_connection_with_an_unread_reply_is_not_handed_out(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, 5.0)
    try:
        assert await client.ping()
        await _release_with_unread_reply(_pool(client))
        for i in range(5):
            assert await client.echo(f"mine{i}") == f"mine{i}".encode()
    finally:
        await client.aclose()


@quick_only
async def test_script_calls_never_take_a_connection_with_an_unread_reply(
    redis_server: Any,
) -> None:
    client = build_client(redis_server.url, True, 5.0)
    try:
        assert await client.ping()
        pool = _pool(client)
        stale = await _release_with_unread_reply(pool)
        assert pool.take_idle() is None  # the step-free checkout leaves it to get_connection
        assert pool._available_connections[-1] is stale
        echo = ScriptCall(client, client.register_script("return ARGV[1]"), is_async=True)
        for i in range(5):
            assert await echo([], [f"mine{i}"]) == f"mine{i}".encode()
        assert not pool._in_use_connections
    finally:
        await client.aclose()


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
    from qtasks.redis._script import ScriptCall

    app = QueueTasks(name="wire-scripts", broker_url=redis_server.url)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        first = await app.add_task("t", 1)
        assert isinstance(app.broker.connection.script(5.0, "ENQUEUE"), ScriptCall)
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


# -- the sync client's quick paths ------------------------------------------------------------


def _sync_pool(client: Any) -> QuickSyncPool:
    pool = client.connection_pool
    assert isinstance(pool, QuickSyncPool) or not QUICK
    return pool  # type: ignore[no-any-return]


def _count_slow_checkouts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the checkouts that reach redis-py's own code (the quick path's fallback)."""
    slow = [0]
    original = redis.BlockingConnectionPool.get_connection

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        slow[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.BlockingConnectionPool, "get_connection", counting)
    return slow


@quick_only
def test_sync_sequential_calls_take_the_quick_path_on_one_connection(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = _count_slow_checkouts(monkeypatch)
    client = build_client(redis_server.url, False, 5.0)
    try:
        for i in range(50):
            client.set("k", i)
        assert int(client.get("k")) == 49
        pool = _sync_pool(client)
        assert slow[0] == 1  # the first checkout makes the connection; the others are quick
        assert len(pool._connections) == 1
        assert not pool._quick
    finally:
        client.close()


@quick_only
def test_sync_threads_beyond_the_pool_size_wait_and_all_finish(redis_server: Any) -> None:
    client = build_client(redis_server.url, False, 5.0)
    try:
        n = POOL_SIZE * 3
        # BLPOP holds each connection for a while, so later callers must queue for one.
        with ThreadPoolExecutor(n) as pool_threads:
            popped = list(pool_threads.map(lambda i: client.blpop([f"none:{i}"], 0.05), range(n)))
            counts = list(pool_threads.map(lambda _: client.incr("counter"), range(n)))
        assert popped == [None] * n
        assert sorted(counts) == list(range(1, n + 1))
        pool = _sync_pool(client)
        assert not pool._quick
        assert pool.pool.qsize() == POOL_SIZE  # every connection came back
        assert len(pool._connections) <= POOL_SIZE
    finally:
        client.close()


def test_sync_a_connection_with_an_unread_reply_is_not_handed_out(redis_server: Any) -> None:
    client = build_client(redis_server.url, False, 5.0)
    try:
        assert client.ping()
        pool = _sync_pool(client)
        stale = pool.get_connection()
        stale.send_command("ECHO", "stale")  # its reply is never read
        wait_for(stale.can_read, what="the unread reply")
        pool.release(stale)
        for i in range(5):
            assert client.echo(f"mine{i}") == f"mine{i}".encode()
    finally:
        client.close()


def test_sync_a_killed_connection_is_replaced(redis_server: Any) -> None:
    client = build_client(redis_server.url, False, 5.0)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping()
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        for i in range(5):
            assert client.incr("after") == i + 1
    finally:
        client.close()
        admin.close()


def test_sync_script_calls_survive_a_script_flush_and_a_killed_connection(
    redis_server: Any,
) -> None:
    from qtasks import QueueTasks
    from qtasks.redis._script import ScriptCall

    app = QueueTasks(name="wire-scripts", broker_url=redis_server.url)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        first = app.add_task("t", 1)
        assert isinstance(app.broker.connection.script(5.0, "ENQUEUE"), ScriptCall)
        admin.script_flush()  # NOSCRIPT on the next call: loaded again, the call re-run
        second = app.add_task("t", 2)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        third = app.add_task("t", 3)  # the pooled connection is dead: one retry
        records = [app.get(t.uuid) for t in (first, second, third)]
        assert [(r.status, r.args) for r in records] == [("new", (n,)) for n in (1, 2, 3)]
    finally:
        admin.close()


# -- pipelined script calls (the worker's batched writes), both flavours -----------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_pipelined_calls_reply_in_order_with_errors_in_place(
    flavour: str, redis_server: Any
) -> None:
    from redis.exceptions import ResponseError

    from qtasks._drive import run_async, run_sync
    from qtasks.redis._script import ScriptCall
    from qtasks.redis._stream import pipelined_scripts_flow

    is_async = flavour == "async"
    client = build_client(redis_server.url, is_async, 5.0)
    echo = ScriptCall(client, client.register_script("return ARGV[1]"), is_async)
    fail = ScriptCall(client, client.register_script("return redis.error_reply('boom')"), is_async)
    admin = redis.Redis.from_url(redis_server.url)

    async def run(calls: list[Any]) -> list[Any]:
        flow = pipelined_scripts_flow(client, calls)
        return await run_async(flow) if is_async else await asyncio.to_thread(run_sync, flow)

    try:
        for _ in range(2):  # the second time after SCRIPT FLUSH: loaded again and re-run
            replies = await run([(echo, [], ["a"]), (fail, [], []), (echo, [], ["c"])])
            assert replies[0] == b"a" and replies[2] == b"c"
            assert isinstance(replies[1], ResponseError) and "boom" in str(replies[1])
            admin.script_flush()
        # The connection stayed in step: the next call reads its own reply.
        assert await run([(echo, [], ["next"])]) == [b"next"]
    finally:
        admin.close()
        if is_async:
            await client.aclose()
        else:
            client.close()


# -- the version gate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "release"),
    [("8.1.0", (8, 1)), ("7.4.1", (7, 4)), ("8.0b1", (8, 0)), ("10.2.3rc1", (10, 2)), ("x", ())],
)
def test_the_release_of_a_redis_py_version(version: str, release: tuple[int, ...]) -> None:
    from qtasks.redis._wire import _release

    assert _release(version) == release


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_without_the_quick_paths_the_clients_use_redis_pys_own_pools(
    redis_server: Any, flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an older redis-py gets (CI runs this package's tests on 7.4 as well): stock pools
    and connections, and script calls that still work through them."""
    from qtasks.redis import _wire
    from qtasks.redis._wire import _packing_class

    monkeypatch.setattr(_wire, "QUICK", False)
    is_async = flavour == "async"
    client = build_client(redis_server.url, is_async, 5.0)
    pool = client.connection_pool
    stock = redis.asyncio.BlockingConnectionPool if is_async else redis.BlockingConnectionPool
    assert type(pool) is stock
    plain = redis.asyncio.Connection if is_async else redis.Connection
    assert pool.connection_class is plain
    assert _packing_class(plain) is not plain  # what QUICK would have installed
    echo = ScriptCall(client, client.register_script("return ARGV[1]"), is_async)
    try:
        if is_async:
            assert await echo([], ["hi"]) == b"hi"
        else:
            assert await asyncio.to_thread(echo, [], ["hi"]) == b"hi"
    finally:
        if is_async:
            await client.aclose()
        else:
            client.close()
