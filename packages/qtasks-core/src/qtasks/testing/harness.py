"""Test helpers: one async API over both app flavours, so behavioural tests are written once."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from qtasks.apps.async_app import QueueTasks as AsyncQueueTasks
from qtasks.apps.sync_app import QueueTasks as SyncQueueTasks

_names = itertools.count()


class Harness:
    """Drives either app flavour through one async API, so each test is written once."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.cleanups: list[Any] = []
        name = f"t{next(_names)}-{kind}"
        cls = AsyncQueueTasks if kind == "async" else SyncQueueTasks
        self.app: Any = cls(name=name, broker_url=f"memory://{name}")
        self.app.config.shutdown_grace = 2.0

    def task(self, *args: Any, **kwargs: Any) -> Any:
        return self.app.task(*args, **kwargs)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        func = getattr(self.app, method)
        if self.kind == "async":
            return await func(*args, **kwargs)
        return await asyncio.to_thread(func, *args, **kwargs)

    async def call_on(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a component's method the way its flavour needs."""
        func = getattr(obj, method)
        if self.kind == "async":
            return await func(*args, **kwargs)
        return await asyncio.to_thread(func, *args, **kwargs)

    async def add_task(self, *args: Any, **kwargs: Any) -> Any:
        return await self.call("add_task", *args, **kwargs)

    async def start(self) -> None:
        await self.call("start")

    async def stop(self, grace: float | None = None) -> None:
        await self.call("stop", grace)


async def wait_event(event: Any, timeout: float = 5.0) -> None:
    """Wait for a threading.Event from async code without blocking the loop."""
    assert await asyncio.to_thread(event.wait, timeout), "event not set in time"
