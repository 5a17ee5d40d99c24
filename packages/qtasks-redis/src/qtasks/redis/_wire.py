"""The clients' hot path: command packing in C, writes and pool checkouts without the machinery
a Redis call on an idle connection does not need.

Packing. redis-py's sync connections pack commands with hiredis when it is installed; its asyncio
connections always pack in Python, re-joining the whole buffer for every argument. qtasks' calls
are Lua scripts with 15-30 arguments (the keys each script touches, then its data), so packing
was about 40 us of every enqueue, more than the script itself spends in Redis. The asyncio pool
here makes its connections from a subclass that packs with `hiredis.pack_command`, exactly as
redis-py's `HiredisRespSerializer` does for sync connections; without hiredis nothing changes.

Writes. redis-py wraps every write in `asyncio.wait_for(drain(), socket_timeout)`, which in
Python 3.11 spawns a task per command and costs the event loop an extra turn. A write that the
socket takes whole needs no drain at all; only one that leaves bytes buffered is drained, under
the same timeout and with the same errors as redis-py's.

Checkouts. redis-py 8's blocking pool takes an `asyncio.Condition` and a timeout context and
records metrics on every checkout and return. `QuickPool` hands out an idle, connected, clean
connection directly and takes it back directly while no caller waits; anything else (no idle
connection, a connection to reconnect, waiters) goes through redis-py's own code. Together these
were about 35 us of every call (an enqueue took 197 us). The sync pool (`QuickSyncPool`) does
the same over redis-py's thread-safe queue of connections: its checkout and return recorded four
metrics and read the clock twice, about 7 us of a 25 us script call's client CPU. Sync
connections pack with hiredis too, without redis-py's per-argument type scan.

Commands. `AsyncClient.execute_command` is redis-py's (checkout, send, parse, one retry on a
connection error, return) without its per-call metrics. Defined on qtasks' own client classes,
it also keeps the queue's internal traffic out of tracers that patch redis-py's client classes:
sentry-sdk's Redis integration (on by default) added a breadcrumb and a span to every claim,
finish and enqueue script, about 20 % of end-to-end throughput, and 100 breadcrumbs of queue
plumbing would push a task's own breadcrumbs out of its error events. Pipelines and a client
passed in by the application are left as they are.

Versions. The mixins and pools below lean on redis-py internals that changed between releases
(8.1 has them all; 7.4 lacks `can_read` on asyncio connections, sync connections there pack
through `_command_packer` without `pack_command`, and their reads take other arguments). With
an older redis-py than `QUICK_SINCE`, `build_client` makes stock redis-py pools and connections
under qtasks' client classes: the same calls and errors, at redis-py's own cost.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable
from functools import cache, partial
from queue import Empty, Full
from typing import Any

from qtasks._drive import Flow
from qtasks.redis._reads import QuickReads
from redis import BlockingConnectionPool as SyncBlockingPool
from redis import Redis as SyncRedis
from redis import __version__ as _REDIS_PY_VERSION
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.connection import AbstractConnection as AsyncAbstractConnection
from redis.exceptions import ConnectionError, DataError, TimeoutError

QUICK_SINCE = (8, 1)


def _release(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string; "8.1.0" -> (8, 1), "8.1b2" -> (8, 1)."""
    parts: list[int] = []
    for part in version.split(".")[:2]:
        leading = re.match(r"\d+", part)
        if leading is None:
            break
        parts.append(int(leading.group()))
    return tuple(parts)


QUICK = _release(_REDIS_PY_VERSION) >= QUICK_SINCE
"""Whether the installed redis-py has what the quick paths below rely on (see "Versions")."""


def _hiredis_packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    try:
        from hiredis import pack_command
    except ImportError:  # pragma: no cover - a dependency, but an install without it still works
        return None
    return pack_command


_PACK = _hiredis_packer()


class _HiredisPacking:
    """Mixin over a redis-py Connection class, sync or asyncio (TCP, TLS or Unix socket)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py: a command name may carry literal arguments ("CONFIG GET").
        first = args[0]
        if isinstance(first, str):
            args = tuple(first.encode().split()) + args[1:]
        elif b" " in first:
            args = tuple(first.split()) + args[1:]
        try:
            return [_PACK(args)]  # type: ignore[misc]  # only installed when present
        except TypeError:
            pass
        # hiredis takes bytes, str, int and float; redis-py also encodes these two.
        args = tuple(bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args)
        try:
            return [_PACK(args)]  # type: ignore[misc]
        except TypeError:
            _, value, traceback = sys.exc_info()
            raise DataError(value).with_traceback(traceback) from None

    def pack_commands(self, commands: Any) -> list[bytes]:
        # One buffer for a pipeline: a sync connection makes one `sendall` per item.
        return [b"".join(self.pack_command(*command)[0] for command in commands)]


_TIMEOUT: Any = getattr(asyncio, "timeout", None)
"""`asyncio.timeout` (3.11+): on 3.11 `asyncio.wait_for` loses a cancel that comes in the turn
its inner call ends, which once left a stopping worker's loop running for good."""


class _QuickWrites(_HiredisPacking):
    """Mixin over a redis-py asyncio Connection class: packing, and writes without a drain."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        writer = getattr(self, "_writer", None)
        if writer is None or not isinstance(command, list) or not self.is_connected:  # type: ignore[attr-defined]
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if check_health:
            await self.check_health()  # type: ignore[attr-defined]
        transport = writer.transport
        if transport.is_closing():
            await super().send_packed_command(command, False)  # type: ignore[misc]
            return
        writer.writelines(command)
        if transport.get_write_buffer_size() == 0:
            return  # the socket took it all: nothing to drain
        try:
            if _TIMEOUT is not None:
                async with _TIMEOUT(self.socket_timeout):  # type: ignore[attr-defined]
                    await writer.drain()
            else:
                await asyncio.wait_for(writer.drain(), self.socket_timeout)  # type: ignore[attr-defined]
        except asyncio.TimeoutError:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise ConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            # As redis-py: a write cut short leaves the stream unusable.
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise


@cache
def _packing_class(base: type) -> type:
    if issubclass(base, AsyncAbstractConnection):
        mixins: tuple[type, ...] = (_QuickWrites, QuickReads)
    else:
        mixins = (_HiredisPacking,)
    return type(base.__name__, (*mixins, base), {"__module__": __name__})


async def _dirty(connection: Any) -> bool:
    """Bytes left unread, or a closed stream (redis-py's own test, which never suspends)."""
    try:
        return bool(await connection.can_read())
    except (OSError, ConnectionError):
        return True


def _dirty_now(connection: Any) -> bool | None:
    """`_dirty` run to its end at once, which redis-py's test allows (it never suspends); None
    if it did suspend, and then the caller awaits `_dirty` instead."""
    check = connection.can_read()
    try:
        check.send(None)
    except StopIteration as done:
        return bool(done.value)
    except (OSError, ConnectionError):
        return True
    check.close()
    return None


def checkout_flow(pool: Any) -> Flow[Any]:
    """A connection from `pool`: an idle one straight away when the pool has `take_idle` (no
    step, so no coroutine to make and await), else through its `get_connection`."""
    take_idle = getattr(pool, "take_idle", None)
    if take_idle is not None:
        connection = take_idle()
        if connection is not None:
            return connection
    return (yield pool.get_connection)


def release_flow(pool: Any, connection: Any) -> Flow[None]:
    """`connection` back to `pool`, straight away when its `give_back` can."""
    give_back = getattr(pool, "give_back", None)
    if give_back is None or not give_back(connection):
        yield partial(pool.release, connection)


def _needs_reconnect(connection: Any) -> bool:
    check = getattr(connection, "should_reconnect", None)
    return bool(check()) if check is not None else False


class QuickPool(BlockingConnectionPool):
    """A blocking pool whose uncontended checkout and return skip the lock, the timeout context
    and the metrics (see the module doc); contended ones are redis-py's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued = 0  # callers inside redis-py's checkout, maybe waiting for a connection
        self._quick: set[int] = set()  # ids of connections handed out by the quick path

    def take_idle(self) -> Any:
        """`get_connection`'s quick path without awaiting anything: an idle, connected, clean
        connection, or None (then `get_connection` decides, and repairs a stale one)."""
        idle = self._available_connections
        if not idle or self._queued or getattr(self, "_in_maintenance", False):
            return None
        connection = idle[-1]
        if not connection.is_connected or _dirty_now(connection) is not False:
            return None
        idle.pop()
        self._in_use_connections.add(connection)
        self._quick.add(id(connection))
        return connection

    def give_back(self, connection: Any) -> bool:
        """`release`'s quick path without awaiting anything; False when it needs `release`."""
        if id(connection) not in self._quick or self._queued or _needs_reconnect(connection):
            return False
        self._quick.discard(id(connection))
        self._in_use_connections.discard(connection)
        self._available_connections.append(connection)
        return True

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = self.take_idle()
        if connection is not None:
            return connection
        idle = self._available_connections
        if idle and not self._queued and not getattr(self, "_in_maintenance", False):
            top = idle[-1]
            if top.is_connected and await _dirty(top):
                # Closed, or holding a reply nobody read: dropped, and redis-py's path below
                # reconnects it (redis-py 8.1's own test is off while maintenance notifications
                # are "auto", its default, and it would hand the stale reply to the next call).
                await top.disconnect()
        self._queued += 1
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        finally:
            self._queued -= 1

    async def release(self, connection: Any) -> None:
        if self.give_back(connection):
            return
        if id(connection) not in self._quick:
            await super().release(connection)
            return
        self._quick.discard(id(connection))
        async with self._condition:  # a caller waits, or the connection must reconnect
            self._in_use_connections.discard(connection)
            if _needs_reconnect(connection):
                await connection.disconnect()
            self._available_connections.append(connection)
            self._condition.notify()


class QuickSyncPool(SyncBlockingPool):
    """The sync pool: an uncontended checkout takes an idle, connected, clean connection straight
    from redis-py's queue, and its return puts it straight back, without the metrics (see the
    module doc); anything else is redis-py's. Thread-safe: the queue is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._quick: set[int] = set()  # ids of connections handed out by the quick path

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self._in_maintenance and self.pid == os.getpid():
            try:
                connection = self.pool.get_nowait()
            except Empty:
                connection = None  # all handed out: redis-py's checkout waits for one
            else:
                if connection is not None and connection._sock is not None:
                    try:
                        clean = not connection.can_read()
                    except (OSError, ConnectionError, TimeoutError):
                        clean = False
                    if clean:
                        self._quick.add(id(connection))
                        return connection
                    connection.disconnect()  # stale: as in `QuickPool.get_connection`
                # Not yet made, or dropped: back on top of the (LIFO) queue for redis-py's
                # checkout, which makes or connects it.
                self.pool.put_nowait(connection)
        return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    def release(self, connection: Any) -> None:
        quick = id(connection) in self._quick
        self._quick.discard(id(connection))
        if not quick or self.pid != os.getpid():  # after a fork: redis-py's rules for the child
            super().release(connection)  # type: ignore[no-untyped-call]
            return
        if _needs_reconnect(connection):
            connection.disconnect()
        try:
            self.pool.put_nowait(connection)
        except Full:  # the pool was reset while it was out: it is not one of the pool's now
            connection.disconnect()


def use_fast_packing(pool: Any) -> None:
    """Make the `pool`'s future connections pack with hiredis (before it connects); not with a
    redis-py older than the quick paths know (see "Versions")."""
    if _PACK is not None and QUICK:
        pool.connection_class = _packing_class(pool.connection_class)


class AsyncClient(AsyncRedis):
    """qtasks' asyncio client (see "Commands" in the module doc)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.single_connection_client or self.connection is not None:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        pool = self.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            return await connection.retry.call_with_retry(
                lambda: self._send_command_parse_response(connection, args[0], *args, **options),  # type: ignore[no-untyped-call]
                lambda _error: connection.disconnect(),
            )
        finally:
            await pool.release(connection)


class SyncClient(SyncRedis):
    """qtasks' sync client: redis-py's own command path, under a name tracers do not patch."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        inner = getattr(super(), "_execute_command", None)
        if inner is None:  # an older redis-py without the split
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return inner(*args, **options)
