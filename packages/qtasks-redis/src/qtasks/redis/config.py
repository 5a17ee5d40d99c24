"""`SyncRedisGlobalConfig` and `AsyncRedisGlobalConfig`: shared settings in Redis hashes.

`set(name, key, value)` writes JSON into the hash `{p}:GlobalConfig:{name}` (1.7's layout, so
tools that read 1.7's keys still find them). Keys may carry a TTL (the running status, the
worker registry, timers' once-per-tick marks); Redis 6.2 has no per-field TTL, so expiries live
in a side zset and both keys expire with their last entry. All in Lua, with the server clock.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from functools import partial
from typing import Any

from qtasks._drive import Flow
from qtasks.configs.base import AsyncGlobalConfig, BaseGlobalConfig, SyncGlobalConfig
from qtasks.redis._component import RedisComponent
from qtasks.redis.connection import ASYNC, RedisConnection, guarded, pipeline_step, text
from qtasks.redis.keys import ConfigKeys
from qtasks.redis.protocol import ms


def _load(value: Any) -> Any:
    data = text(value)
    try:
        return json.loads(data)
    except ValueError:
        return data  # written by something else (1.7 stored plain strings)


class RedisGlobalConfigBase(RedisComponent, BaseGlobalConfig):
    def __init__(
        self,
        name: str = "QueueTasks",
        url: str | None = None,
        *,
        redis_connect: Any = None,
        prefix: str | None = None,
        config_name: str | None = None,
        connection: RedisConnection | None = None,
        **kwargs: Any,
    ) -> None:
        self.url = self._connect(url, redis_connect, connection)
        super().__init__(name=name, config_name=config_name, **kwargs)
        self.keys = ConfigKeys(prefix or name, self.config_name)

    def _set(self, name: str, key: str, value: Any, ttl: float | None, only_new: bool) -> Any:
        return self._run(guarded(self._set_flow_(name, key, value, ttl, only_new), "config set"))

    def _set_flow_(
        self, name: str, key: str, value: Any, ttl: float | None, only_new: bool
    ) -> Flow[bool]:
        nonce = uuidlib.uuid4().hex
        keys = [
            self.keys.values(name),
            self.keys.expiries(name),
            self.keys.names,
            self.keys.nx_memo(nonce),
        ]
        data = json.dumps(value, separators=(",", ":"), default=str)
        reply = yield self._script(
            "CONFIG_SET", keys, [key, data, ms(ttl), "1" if only_new else "0", name]
        )
        return bool(int(reply))

    def _get_all(self, name: str) -> Any:
        return self._run(guarded(self._get_all_flow_(name), "config get"))

    def _get_all_flow_(self, name: str) -> Flow[dict[str, Any]]:
        reply = yield self._script(
            "CONFIG_GET_ALL", [self.keys.values(name), self.keys.expiries(name)], []
        )
        items = list(reply)
        return {text(items[i]): _load(items[i + 1]) for i in range(0, len(items), 2)}

    def _delete(self, name: str, key: str) -> Any:
        return self._run(
            guarded(
                self._step_flow(
                    self._script(
                        "CONFIG_DELETE", [self.keys.values(name), self.keys.expiries(name)], [key]
                    )
                ),
                "config delete",
            )
        )

    def _names(self) -> Any:
        return self._run(guarded(self._names_flow(), "config names"))

    def _names_flow(self) -> Flow[list[str]]:
        client = self.client
        names = sorted(text(n) for n in (yield partial(client.smembers, self.keys.names)))
        if not names:
            return []
        # A name whose keys all expired is dropped from the index.
        found = yield pipeline_step(client, [("exists", (self.keys.values(n),)) for n in names])
        found = [int(f) for f in found]
        gone = [n for n, f in zip(names, found, strict=True) if not f]
        if gone:
            yield partial(client.srem, self.keys.names, *gone)
        return [n for n, f in zip(names, found, strict=True) if f]

    def _start(self) -> Any:
        return self._run(self._acquire_flow())

    def _stop(self) -> Any:
        return self._run(self._release_flow())

    def _start_flow(self) -> Flow[None]:
        yield self._start
        yield from super()._start_flow()

    def _stop_flow(self) -> Flow[None]:
        yield from super()._stop_flow()
        yield self._stop


class SyncRedisGlobalConfig(RedisGlobalConfigBase, SyncGlobalConfig):
    """Redis global config for the sync app (`redis.Redis`)."""


class AsyncRedisGlobalConfig(RedisGlobalConfigBase, AsyncGlobalConfig):
    """Redis global config for the asyncio app (`redis.asyncio.Redis`)."""

    flavour = ASYNC
