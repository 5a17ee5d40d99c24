"""sentry-sdk's Redis integration (on by default) records the application's Redis commands, not
the queue's own: qtasks' clients are not the classes it patches (see qtasks.redis._wire)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import sentry_sdk

from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks


def redis_commands(transport: Any) -> list[str]:
    transport.wait(lambda t: t.events())
    crumbs = transport.events()[-1].get("breadcrumbs", {}).get("values", [])
    return [c["data"]["redis.command"] for c in crumbs if c.get("category") == "redis"]


def test_sync_app_traffic_is_not_recorded_but_the_applications_is(
    sentry_init: Callable[..., Any], redis_server: Any
) -> None:
    transport = sentry_init()
    app = QueueTasks(name="noise-sync", broker_url=redis_server.url)
    app.task(name="noop")(lambda: None)
    task = app.add_task("noop")
    assert app.get(task.uuid) is not None
    mine = redis.Redis.from_url(redis_server.url)
    mine.set("mine", 1)
    sentry_sdk.capture_message("probe")
    assert redis_commands(transport) == ["SET"]


async def test_async_app_traffic_is_not_recorded_but_the_applications_is(
    sentry_init: Callable[..., Any], redis_server: Any
) -> None:
    transport = sentry_init()
    app = AsyncQueueTasks(name="noise-async", broker_url=redis_server.url)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    task = await app.add_task("noop")
    assert await app.get(task.uuid) is not None
    mine = redis.asyncio.Redis.from_url(redis_server.url)
    await mine.set("mine", 1)
    await mine.aclose()
    sentry_sdk.capture_message("probe")
    assert redis_commands(transport) == ["SET"]
