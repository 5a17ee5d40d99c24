"""Reads under the socket timeout without a timer per read (`_reads.py`), against a real Redis
that `CLIENT PAUSE` holds: a read past its deadline fails with redis-py's `TimeoutError` and
nothing else, a cancel from outside stays a cancel, reads that keep coming in time never trip
the timer, and redis-py's relax hook moves a running read's deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.exceptions

from qtasks.redis._reads import ReadDeadline
from qtasks.redis._wire import QUICK
from qtasks.redis.connection import build_client

TIMEOUT = 0.3

# `ReadDeadline` serves reads only with the quick paths (redis-py 8.1+) and `Task.uncancel`
# (Python 3.11+); otherwise reads are redis-py's own, which the other tests here cover too.
deadline_reads_only = pytest.mark.skipif(
    not QUICK or not hasattr(asyncio.Task, "uncancel"),
    reason="ReadDeadline needs redis-py >= 8.1 and Python >= 3.11",
)


async def _until(predicate: Callable[[], Any], what: str, limit: float = 5.0) -> Any:
    """Poll the event loop's own state (nothing to await for it) until `predicate()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
    return value


def _reading(client: Any) -> Any:
    """The client's connection whose read is in progress on the quick path, if any."""
    for connection in client.connection_pool._in_use_connections:
        if isinstance(getattr(connection, "_active_read_timeout", None), ReadDeadline):
            return connection
    return None


async def _paused_read(client: Any, admin: Any, pause_ms: int) -> tuple[Any, Any]:
    """A GET of "k" that Redis holds for `pause_ms`: (its task, its connection once reading)."""
    await client.set("k", "v")  # connected before the pause
    admin.client_pause(pause_ms, all=True)
    reader = asyncio.create_task(client.get("k"))
    return reader, await _until(lambda: _reading(client), "the read to start")


# Without `Task.uncancel` (Python 3.10) reads take redis-py's own path: the same error.
@pytest.mark.parametrize("path", ["ReadDeadline", "redis-py's asyncio.timeout"])
async def test_a_read_past_its_deadline_raises_redis_timeout(
    redis_server: Any, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path != "ReadDeadline":
        monkeypatch.setattr("qtasks.redis._reads._UNCANCEL", False)
    client = build_client(redis_server.url, True, TIMEOUT)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        await client.set("k", "v")  # connected before the pause
        admin.client_pause(1500, all=True)  # outlasts both tries (see below)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(redis.exceptions.TimeoutError, match="Timeout reading"):
            await client.get("k")
        # One retry (see build_client): two reads, each cut at its own deadline.
        assert 2 * TIMEOUT <= loop.time() - started < 1.5
        task = asyncio.current_task()
        if hasattr(asyncio.Task, "uncancel"):  # Python 3.11+: the timeout's cancel taken back
            assert task is not None and task.cancelling() == 0
        admin.ping()  # answered when the pause ends
        assert await client.get("k") == b"v"  # on a fresh connection
    finally:
        admin.client_unpause()
        await client.aclose()


@deadline_reads_only
async def test_a_cancel_from_outside_stays_a_cancel(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, 5.0)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        reader, connection = await _paused_read(client, admin, 600)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert not connection.is_connected  # cut between request and reply: closed
        assert connection._active_read_timeout is None
        assert await client.get("k") == b"v"
    finally:
        admin.client_unpause()
        await client.aclose()


async def test_reads_in_time_never_trip_the_timer(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, TIMEOUT)
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 4 * TIMEOUT  # the first timer fires, re-arms, and so on
        reads = 0
        while loop.time() < end:
            assert await client.incr("n") == reads + 1
            reads += 1
        # Idle past the deadline (the scenario itself, not a wait for something): the timer
        # fires on a connection that reads nothing, and the next read is unaffected.
        await asyncio.sleep(2 * TIMEOUT)
        assert await client.incr("n") == reads + 1
    finally:
        await client.aclose()


@deadline_reads_only
async def test_the_relax_hook_moves_a_running_reads_deadline(redis_server: Any) -> None:
    client = build_client(redis_server.url, True, TIMEOUT)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        reader, connection = await _paused_read(client, admin, 1000)
        # What redis-py does on a maintenance notification: relax the running read's timeout.
        connection.update_current_socket_timeout(10.0)
        assert await reader == b"v"  # answered when the pause ended, long after TIMEOUT
    finally:
        admin.client_unpause()
        await client.aclose()
