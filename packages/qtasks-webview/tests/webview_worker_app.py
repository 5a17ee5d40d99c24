"""The app the web view tests fill Redis with: in-process (`build(url)`) or as a worker process
(`python -m qtasks -A webview_worker_app:app run`, with QT_URL set).

`later` exists only with QT_FIXED=1: a worker without it dead-letters `later` tasks as unknown
("a deploy that forgot a task"), a worker with it runs them once they are retried.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

APP_NAME = "webview"


def build(url: str, *, fixed: bool = False, name: str = APP_NAME) -> Any:
    from qtasks.asyncio import QueueTasks
    from qtasks.configs.config import QueueConfig

    app = QueueTasks(
        name=name,
        broker_url=url,
        config=QueueConfig(heartbeat_interval=0.5, lease_timeout=5.0, block_timeout=0.5),
    )

    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="echo")
    async def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    @app.task(name="boom")
    async def boom(message: str) -> None:
        raise ValueError(message)

    @app.task(name="flaky", retry=1)
    async def flaky() -> None:
        raise RuntimeError("flaky always fails")

    @app.task(name="sleepy")
    async def sleepy(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    if fixed:

        @app.task(name="later")
        async def later(x: int) -> int:
            return x * 10

    return app


if "QT_URL" in os.environ:
    app = build(os.environ["QT_URL"], fixed=os.environ.get("QT_FIXED") == "1")
