"""GlobalConfig interface: settings shared by every process of an app, and its heartbeat.

A conforming global config stores JSON values by `(name, key)` (text names and keys; a value is
read back as JSON gives it back, a copy, on every backend), offers an
atomic `set_nx` with a TTL (timers use it so that one tick enqueues once across replicas), keeps a
`main` running-status entry alive while started (what `app.ping()` checks), and keeps a registry
of live workers that stats and the web view read.
"""

from __future__ import annotations

import fnmatch
import json
import time
from abc import abstractmethod
from functools import partial
from typing import Any, ClassVar

from qtasks._drive import Flow, run_async, run_sync
from qtasks.base.component import Component
from qtasks.exc import QueueFullError, TaskOptionError
from qtasks.schemas.envelope import dumps
from qtasks.schemas.options import check_seconds

STATUS_NAME = "main"
WORKERS_NAME = "workers"


class BaseGlobalConfig(Component):
    component: ClassVar[str] = "global_config"
    url_schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, name: str = "QueueTasks", config_name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.config_name = config_name or "GlobalConfig"

    # -- primitives -----------------------------------------------------------------------------
    @abstractmethod
    def _set(self, name: str, key: str, value: Any, ttl: float | None, only_new: bool) -> Any:
        """Store a value; with `only_new`, only if absent (atomically). Returns whether stored."""

    @abstractmethod
    def _get_all(self, name: str) -> Any:
        """Every key of `name` (unexpired)."""

    @abstractmethod
    def _delete(self, name: str, key: str) -> Any:
        """Remove one key."""

    def _names(self) -> Any:
        """Every name that holds keys (for `get_match` over names)."""
        raise NotImplementedError

    # -- shared flows -----------------------------------------------------------------------------
    @staticmethod
    def _stored(name: Any, key: Any, value: Any) -> tuple[str, str, Any]:
        """What every global config keeps: text names and keys, and the value as JSON gives it
        back (a tuple is a list, a dict's keys are text), so the in-memory one reads back what
        Redis does. A value JSON cannot carry is a `SerializationError` here, not a string
        (`str(value)`) in Redis or an object only the in-memory one keeps."""
        text = dumps(value, f"global config value {name!r}/{key!r}")
        return str(name), str(key), json.loads(text)

    def _set_flow(self, name: str, key: str, value: Any) -> Flow[None]:
        out = yield from self.plugins.global_config(
            "global_config_set", global_config=self, name_=name, key=key, value=value
        )
        stored = self._stored(out["name_"], out["key"], out["value"])
        yield partial(self._set, *stored, None, False)

    def _get_flow(self, key: str, name: str) -> Flow[Any]:
        values = yield partial(self._get_all, key)
        value = values.get(name)
        out = yield from self.plugins.global_config(
            "global_config_get", global_config=self, get=value
        )
        return out["get"]

    def _get_all_flow(self, key: str) -> Flow[dict[str, Any]]:
        values = yield partial(self._get_all, key)
        out = yield from self.plugins.global_config(
            "global_config_get_all", global_config=self, get=values
        )
        return dict(out["get"])

    def _get_match_flow(self, match: str) -> Flow[dict[str, Any]]:
        # 1.7 matched keys inside the config hash: `get_match("user:*")`.
        values = yield partial(self._get_all, self.config_name)
        found = {k: v for k, v in values.items() if fnmatch.fnmatchcase(k, match)}
        out = yield from self.plugins.global_config(
            "global_config_get_match", global_config=self, get=found
        )
        return dict(out["get"])

    def _set_nx_flow(self, name: str, key: str, value: Any, ttl: float | None) -> Flow[bool]:
        if ttl is not None:
            # A TTL of 0 or less expired at once in memory and lived 1 ms in Redis.
            ttl = check_seconds(ttl, "ttl", f"global config set_nx {name!r}/{key!r}")
            if ttl is not None and ttl <= 0:
                raise TaskOptionError(f"global config set_nx: ttl must be positive, not {ttl!r}")
        return bool((yield partial(self._set, *self._stored(name, key, value), ttl, True)))

    def _delete_flow(self, name: str, key: str) -> Flow[None]:
        yield partial(self._delete, name, key)

    def _heartbeat_flow(self) -> Flow[None]:
        ttl = self.config.global_config_status_ttl
        status = {"name": self.name, "status": "running", "at": time.time()}
        yield partial(self._set, STATUS_NAME, "status", status, ttl, False)

    def _start_flow(self) -> Flow[None]:
        yield from self.plugins.global_config("global_config_start", global_config=self)
        try:
            yield from self._heartbeat_flow()
        except QueueFullError as exc:
            # A worker starts and drains while Redis is out of memory (its writes are let
            # through, and draining frees memory); the status is written by the periodic
            # heartbeat once the write goes through.
            self.log.warning("running status not written at start: %s", exc)
        yield from self.plugins.global_config("global_config_set_status", global_config=self)

    def _stop_flow(self) -> Flow[None]:
        yield from self.plugins.global_config("global_config_stop", global_config=self)
        yield partial(self._delete, STATUS_NAME, "status")

    def _running_flow(self) -> Flow[bool]:
        values = yield partial(self._get_all, STATUS_NAME)
        return "status" in values


class SyncGlobalConfig(BaseGlobalConfig):
    def set(self, name: str, key: str, value: Any) -> None:
        run_sync(self._set_flow(name, key, value))

    def get(self, key: str, name: str) -> Any:
        return run_sync(self._get_flow(key, name))

    def get_all(self, key: str) -> dict[str, Any]:
        return run_sync(self._get_all_flow(key))

    def get_match(self, match: str) -> dict[str, Any]:
        return run_sync(self._get_match_flow(match))

    def set_nx(self, name: str, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store only if absent, atomically; True when this call stored it."""
        return run_sync(self._set_nx_flow(name, key, value, ttl))

    def delete(self, name: str, key: str) -> None:
        run_sync(self._delete_flow(name, key))

    def heartbeat(self) -> None:
        run_sync(self._heartbeat_flow())

    def is_running(self) -> bool:
        return run_sync(self._running_flow())

    def start(self) -> None:
        run_sync(self._start_flow())

    def stop(self) -> None:
        run_sync(self._stop_flow())


class AsyncGlobalConfig(BaseGlobalConfig):
    is_async: ClassVar[bool] = True

    async def set(self, name: str, key: str, value: Any) -> None:
        await run_async(self._set_flow(name, key, value))

    async def get(self, key: str, name: str) -> Any:
        return await run_async(self._get_flow(key, name))

    async def get_all(self, key: str) -> dict[str, Any]:
        return await run_async(self._get_all_flow(key))

    async def get_match(self, match: str) -> dict[str, Any]:
        return await run_async(self._get_match_flow(match))

    async def set_nx(self, name: str, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store only if absent, atomically; True when this call stored it."""
        return await run_async(self._set_nx_flow(name, key, value, ttl))

    async def delete(self, name: str, key: str) -> None:
        await run_async(self._delete_flow(name, key))

    async def heartbeat(self) -> None:
        await run_async(self._heartbeat_flow())

    async def is_running(self) -> bool:
        return await run_async(self._running_flow())

    async def start(self) -> None:
        await run_async(self._start_flow())

    async def stop(self) -> None:
        await run_async(self._stop_flow())
