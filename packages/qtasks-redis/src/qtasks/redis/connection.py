"""Connections, flavours and error handling shared by every Redis component.

The components hold their logic as flows (`qtasks._drive`): generators that yield zero-argument
steps such as `partial(script, keys, args)`. With a `redis.Redis` client a step returns the
reply; with a `redis.asyncio.Redis` client it returns a coroutine that the async driver awaits.
So one flow serves both flavours, and a `Flavour` only says which client to build, how to run a
flow and how to sleep.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.exceptions as rex
from qtasks._discovery import redact_url
from qtasks._drive import Flow, run_async, run_sync
from qtasks.exc import BrokerError, ConfigError, QueueFullError
from qtasks.redis.scripts import SOURCES
from redis.backoff import ExponentialWithJitterBackoff

DEFAULT_URL = "redis://localhost:6379/0"
URL_SCHEMES = ("redis", "rediss", "unix")
TRANSIENT: tuple[type[BaseException], ...] = (rex.ConnectionError, rex.TimeoutError)
"""Errors a worker waits out (BusyLoadingError, raised while Redis replays its AOF, is one)."""
POOL_SIZE = 100
"""Connections per client (redis-py's default); more callers wait for a free one."""

log = logging.getLogger("qtasks.redis")


@dataclass(frozen=True)
class Flavour:
    is_async: bool
    run: Callable[[Flow[Any]], Any]
    sleep: Callable[[float], Any]


SYNC = Flavour(False, run_sync, time.sleep)
ASYNC = Flavour(True, run_async, asyncio.sleep)


def text(value: Any) -> str:
    """A reply item as str (clients may or may not decode responses)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def build_client(url: str, is_async: bool, socket_timeout: float) -> Any:
    """A client with explicit timeouts and a short retry.

    redis-py 8 gives `from_url` clients a 5 s socket timeout and no retries; we set both. One
    retry with a short backoff covers a pooled connection that died (a Redis restart, a CLIENT
    KILL) without making producers hang: a call fails within about twice the socket timeout.
    Workers wait out longer outages in their own loops.

    The pool is a blocking one: with all its connections busy a call waits (up to the socket
    timeout) for one to come back. redis-py's default pool raises MaxConnectionsError past 100
    connections instead, which an asyncio app awaiting 500 calls at once met as "Redis is
    unreachable" (chaos scenario D6).
    """
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "max_connections": POOL_SIZE,
        "timeout": socket_timeout,
    }
    from qtasks.redis._wire import QUICK, use_fast_packing

    # An older redis-py than the quick paths know gets its own pools and connections.
    if is_async:
        from qtasks.redis._wire import AsyncClient, QuickPool
        from redis.asyncio import BlockingConnectionPool
        from redis.asyncio.retry import Retry as AsyncRetry

        retry: Any = AsyncRetry(ExponentialWithJitterBackoff(cap=0.5, base=0.02), 1)
        pool = (QuickPool if QUICK else BlockingConnectionPool).from_url(
            url, retry=retry, **options
        )
        use_fast_packing(pool)
        return AsyncClient.from_pool(pool)
    from qtasks.redis._wire import QuickSyncPool, SyncClient
    from redis import BlockingConnectionPool as SyncBlockingPool
    from redis.retry import Retry

    retry = Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.02), 1)
    sync_pool = (QuickSyncPool if QUICK else SyncBlockingPool).from_url(url, retry=retry, **options)
    use_fast_packing(sync_pool)
    return SyncClient.from_pool(sync_pool)


def _check_url(url: str) -> None:
    """redis-py's own parse of `url`, made now: a bad port or database number would otherwise
    fail at the first call. The reason is given without the URL's password."""
    from redis.connection import parse_url

    try:
        parse_url(url)  # type: ignore[no-untyped-call]
        parts = urlsplit(url)
        db = parts.path.strip("/")
        # redis-py reads a database that is not a number as none, and so uses database 0.
        if parts.scheme.lower() != "unix" and db and not db.isdigit():
            raise ValueError(f"the database must be a number, not {db!r}")
    except ValueError as exc:
        password = urlsplit(url).password
        reason = str(exc)
        if password and password in reason:
            reason = "malformed"
        raise ConfigError(f"invalid Redis URL {redact_url(url)!r}: {reason}") from None


def _target_of_url(url: str) -> tuple[Any, ...]:
    from redis.connection import parse_url

    opts: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    return (opts.get("host"), opts.get("port"), opts.get("path"), int(opts.get("db") or 0))


def _target_of_client(client: Any) -> tuple[Any, ...]:
    kw = client.connection_pool.connection_kwargs
    return (kw.get("host"), kw.get("port"), kw.get("path"), int(kw.get("db") or 0))


class _Bound:
    """A client and what is made on it: the registered scripts and the write batcher."""

    __slots__ = ("batcher", "client", "scripts")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.scripts: dict[str, Any] = {}
        self.batcher: Any = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class RedisConnection:
    """The one client that a broker, its storage and its global config share.

    Built lazily from the URL (so the socket timeout comes from the app's config, which the app
    binds after construction), or given (`redis_connect=`, used as is). The component that
    stops last closes an owned client's connections.

    An asyncio client's connections belong to the event loop they were made on, so an owned
    asyncio client is made per loop: an app used from one `asyncio.run` and then another, or
    from a `SyncTimer`'s loop thread beside the app's own loop, gets a client of the loop it
    runs on (a given client is used as is).
    """

    def __init__(self, url: str | None, client: Any, is_async: bool) -> None:
        if client is None:
            url = url or DEFAULT_URL
            scheme = urlsplit(url).scheme.lower()
            if scheme not in URL_SCHEMES:
                raise ConfigError(
                    f"not a Redis URL: {redact_url(url)!r} "
                    f"(use {', '.join(s + '://' for s in URL_SCHEMES)})"
                )
            _check_url(url)
            query = parse_qs(urlsplit(url).query)
            if [v.lower() for v in query.get("ssl_cert_reqs", [])] == ["none"]:
                log.warning(
                    "%s: ssl_cert_reqs=none turns off TLS certificate checks", redact_url(url)
                )
        self.url = url
        self.is_async = is_async
        self.owned = client is None
        self._per_loop = self.owned and is_async
        self._bound: _Bound | None = None if client is None else _Bound(client)
        # Per loop (owned asyncio clients): the loop last used, its client and the thread that
        # ran it; and every live loop's client.
        self._last: tuple[asyncio.AbstractEventLoop, _Bound, int] | None = None
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bound] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._users = 0

    def __repr__(self) -> str:
        return f"<RedisConnection {redact_url(self.url)!r}>"

    @property
    def _client(self) -> Any:
        return None if self._bound is None else self._bound.client

    def _current(self, socket_timeout: float) -> _Bound:
        if self._per_loop:
            # The usual case, cheaply: the loop used last is running, in this thread (a thread
            # runs one loop at a time). Asking asyncio for the running loop costs a getpid()
            # system call on Python 3.11.
            last = self._last  # one read: another thread may switch it meanwhile
            if last is not None and last[2] == threading.get_ident() and last[0].is_running():
                return last[1]
            loop = _running_loop()
            if loop is not None:
                return self._switch(loop, socket_timeout)
        bound = self._bound
        if bound is None:
            with self._lock:
                if self._bound is None:
                    assert self.url is not None
                    self._bound = _Bound(build_client(self.url, self.is_async, socket_timeout))
                bound = self._bound
        return bound

    def _switch(self, loop: asyncio.AbstractEventLoop, socket_timeout: float) -> _Bound:
        with self._lock:
            if self._last is None and self._bound is not None:
                self._by_loop[loop] = self._bound  # made before any loop ran: this one's
            for closed in [other for other in self._by_loop if other.is_closed()]:
                del self._by_loop[closed]  # its connections are dead: left to the collector
            bound = self._by_loop.get(loop)
            if bound is None:
                assert self.url is not None
                bound = _Bound(build_client(self.url, True, socket_timeout))
                self._by_loop[loop] = bound
            self._bound = bound
            self._last = (loop, bound, threading.get_ident())
            return bound

    def client(self, socket_timeout: float) -> Any:
        return self._current(socket_timeout).client

    def script(self, socket_timeout: float, name: str) -> Any:
        """A registered script, called as `script(keys, args)`; reloaded after SCRIPT FLUSH or a
        restart. On qtasks' own clients it runs straight on a connection (`_script.py`)."""
        bound = self._current(socket_timeout)
        found = bound.scripts.get(name)
        if found is None:
            from qtasks.redis._script import ScriptCall
            from qtasks.redis._wire import AsyncClient, SyncClient

            client = bound.client
            found = client.register_script(SOURCES[name])
            if isinstance(client, (AsyncClient, SyncClient)):
                found = ScriptCall(client, found, isinstance(client, AsyncClient))
            bound.scripts[name] = found
        return found

    def batcher(self, socket_timeout: float) -> Any:
        """The write-behind batcher of worker writes on this client (see `_batch.py`)."""
        bound = self._current(socket_timeout)
        if bound.batcher is None:
            from qtasks.redis._batch import SyncBatcher
            from qtasks.redis._batch_async import AsyncBatcher

            with self._lock:
                if bound.batcher is None:
                    flavour = AsyncBatcher if self.is_async else SyncBatcher
                    bound.batcher = flavour(bound.client, partial(self.script, socket_timeout))
        return bound.batcher

    def target(self) -> tuple[Any, ...]:
        """(host, port, unix path, db): what must match for scripts to see both key sets."""
        if self._client is not None:
            return _target_of_client(self._client)
        assert self.url is not None
        return _target_of_url(self.url)

    def socket_timeout(self) -> float | None:
        if self._client is None:
            return None
        value = self._client.connection_pool.connection_kwargs.get("socket_timeout")
        return None if value is None else float(value)

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> Any:
        """A step that closes the pool's connections when the last user stops."""
        with self._lock:
            self._users = max(0, self._users - 1)
            last = self._users == 0
        if last and self.owned and self._client is not None:
            return self._client.connection_pool.disconnect()
        return None


_RESET = re.compile(r"reset by peer|closed by server", re.IGNORECASE)


def translate(exc: BaseException, what: str) -> BaseException:
    """A redis-py error as the typed error producers see (no URL, so no password)."""
    # Redis 6.2 reports OOM inside a script as a plain script error.
    if isinstance(exc, rex.OutOfMemoryError) or "OOM command not allowed" in str(exc):
        return QueueFullError(
            f"{what}: Redis is out of memory (maxmemory with noeviction); nothing was written"
        )
    if isinstance(exc, rex.NoPermissionError):
        return BrokerError(
            f"{what}: the Redis user lacks a permission ({exc}); grant "
            "~prefix:* and &prefix:* (see the qtasks-redis README)"
        )
    if isinstance(exc, rex.AuthenticationError | rex.AuthenticationWrongNumberOfArgsError):
        return BrokerError(f"{what}: Redis refused the credentials")
    if isinstance(exc, TRANSIENT):
        hint = ""
        if isinstance(exc, rex.ConnectionError) and _RESET.search(str(exc)):
            # What a plain redis:// client meets at a TLS port (chaos scenario E3).
            hint = "; if that port speaks TLS, use a rediss:// URL"
        return BrokerError(f"{what}: Redis is unreachable ({type(exc).__name__}: {exc}){hint}")
    if isinstance(exc, rex.RedisError):
        return BrokerError(f"{what}: Redis error ({type(exc).__name__}: {exc})")
    return exc


def guarded(flow: Flow[Any], what: str) -> Flow[Any]:
    """Run `flow`, raising typed qtasks errors instead of redis-py's."""
    try:
        return (yield from flow)
    except rex.RedisError as exc:
        raise translate(exc, what) from exc


class Health:
    """Logs an outage once when it starts and once when it ends, not once per call."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.down_since: float | None = None

    def failed(self, exc: BaseException, what: str) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.log.warning(
                "Redis unreachable during %s (%s: %s); retrying with backoff",
                what,
                type(exc).__name__,
                exc,
            )

    def ok(self) -> None:
        if self.down_since is not None:
            self.log.warning(
                "Redis reachable again after %.1fs", time.monotonic() - self.down_since
            )
            self.down_since = None


def backoff(attempt: int, cap: float = 1.0) -> float:
    return float(min(cap, 0.05 * 2 ** min(attempt, 6)))


def persist(
    step: Callable[[], Any],
    budget: float,
    sleep: Callable[[float], Any],
    health: Health,
    what: str,
    stop: Callable[[], bool] = lambda: False,
) -> Flow[Any]:
    """Run `step` (a script call that is safe to re-send), retrying transient errors with
    capped backoff for up to `budget` seconds (or until `stop()`), then re-raising."""
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        try:
            value = yield step
        except TRANSIENT as exc:
            health.failed(exc, what)
            attempt += 1
            if time.monotonic() >= deadline or stop():
                raise
            yield partial(sleep, backoff(attempt))
            continue
        health.ok()
        return value


def pipeline_step(client: Any, commands: Iterable[tuple[str, tuple[Any, ...]]]) -> Any:
    """A step that sends plain commands in one round trip (no MULTI) and returns the replies.

    Commands are queued synchronously on both flavours; only `execute` differs (a coroutine on
    the asyncio client), and the driver awaits it.
    """
    commands = list(commands)

    def step() -> Any:
        pipe = client.pipeline(transaction=False)
        for name, args in commands:
            getattr(pipe, name)(*args)
        return pipe.execute()

    return step
