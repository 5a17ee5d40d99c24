"""What the Redis broker, storage and global config share: the connection and the driver."""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

from qtasks._discovery import redact_url
from qtasks._drive import Flow
from qtasks.base.component import Component
from qtasks.exc import ConfigError
from qtasks.redis.connection import SYNC, Flavour, RedisConnection, text
from qtasks.redis.keys import glob_escape
from qtasks.redis.protocol import ms


class RedisComponent(Component):
    flavour: ClassVar[Flavour] = SYNC
    url_schemes: ClassVar[tuple[str, ...]] = ("redis", "rediss", "unix")
    connection: RedisConnection
    url: str | None

    def _connect(
        self, url: str | None, redis_connect: Any, connection: RedisConnection | None
    ) -> str | None:
        """Adopt a shared connection, wrap a given client, or plan one from `url`."""
        if connection is None:
            if redis_connect is not None:
                from redis.asyncio import Redis as AsyncRedis

                if isinstance(redis_connect, AsyncRedis) != self.flavour.is_async:
                    kind = "redis.asyncio.Redis" if self.flavour.is_async else "redis.Redis"
                    raise ConfigError(
                        f"{type(self).__name__} needs a {kind} client as redis_connect"
                    )
            connection = RedisConnection(url, redis_connect, self.flavour.is_async)
        self.connection = connection
        return connection.url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} url={redact_url(self.url)!r}>"

    def _run(self, flow: Flow[Any]) -> Any:
        """The flow's value (sync flavour) or a coroutine (async flavour)."""
        return self.flavour.run(flow)

    @property
    def client(self) -> Any:
        return self.connection.client(self.config.socket_timeout)

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """A step that runs script `name`."""
        return partial(self.connection.script(self.config.socket_timeout, name), keys, args)

    def _call(self, call: tuple[str, list[str], list[Any]]) -> Any:
        """A step that runs a protocol call (script name, keys, args)."""
        return self._script(*call)

    def _call_flow(self, call: tuple[str, list[str], list[Any]]) -> Flow[Any]:
        """A protocol call inside the caller's flow: on qtasks' own clients the script call's
        steps go through the caller's driver, without a coroutine and a driver of their own."""
        name, keys, args = call
        script = self.connection.script(self.config.socket_timeout, name)
        flow = getattr(script, "flow", None)
        if flow is None:  # redis-py's script object, on a client the application passed in
            return (yield partial(script, keys, args))
        return (yield from flow(keys, args))

    def _batched(self, packer: Any, item: Any, key: tuple[str, str] | None = None) -> Any:
        """A step that sends `item` in the next shared round trip, merged with the other items
        of `packer` into one script call (see `_batch.py`); its reply is the item's own."""
        batcher = self.connection.batcher(self.config.socket_timeout)
        return partial(batcher.submit, packer, item, key)

    def _ttl_ms(self) -> int:
        """`config.result_ttl` for the scripts (0: keep finished records)."""
        return ms(self.config.result_ttl)

    def _step_flow(self, step: Any) -> Flow[Any]:
        """A flow of one step (to wrap a single call in `guarded`)."""
        return (yield step)

    def _scan_delete_flow(self, prefix: str, families: tuple[str, ...]) -> Flow[int]:
        """Delete the keys under `prefix:` whose first part is in `families`, by SCAN (no KEYS,
        no FLUSHDB: an ACL user limited to the prefix can run it)."""
        client = self.client
        pattern = glob_escape(prefix) + ":*"
        start = len(prefix) + 1
        wanted = set(families)
        cursor: Any = 0
        deleted = 0
        while True:
            cursor, batch = yield partial(client.scan, cursor, match=pattern, count=1000)
            doomed = [k for k in batch if text(k)[start:].split(":", 1)[0] in wanted]
            if doomed:
                deleted += int((yield partial(client.delete, *doomed)))
            if int(cursor) == 0:
                return deleted

    def _acquire_flow(self) -> Flow[None]:
        self.connection.acquire()
        yield from ()

    def _release_flow(self) -> Flow[None]:
        yield self.connection.release
