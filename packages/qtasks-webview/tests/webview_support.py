"""Helpers of the web view tests: a filled Redis, a served dashboard, a worker process.

Imported by name (conftest.py puts this directory on sys.path); the names are unique across
the workspace's test directories.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CANARY = "canary-pw-7f3c9e1d"
"""The Redis password of the HTTP tests: it must never appear in a response."""
XSS = "<script>window.__qtasks_xss = 1; document.title = 'pwned'</script>"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Filled:
    """What `fill` put in Redis, for the assertions."""

    url: str
    success: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    xss: str = ""
    cancelled: str = ""
    queued: str = ""
    dead: str = ""
    more_dead: list[str] = field(default_factory=list)
    schedule: str = ""
    flaky: str = ""
    flaky_child: str = ""


async def _fill(url: str, dead_letters: int) -> Filled:
    from apscheduler.triggers.cron import CronTrigger
    from webview_worker_app import APP_NAME, build

    from qtasks.asyncio import QueueTasks
    from qtasks.configs.config import QueueConfig
    from qtasks.timer import AsyncTimer

    out = Filled(url)
    app = build(url)
    # Enqueues a name no app registers; enqueue_unknown_tasks because other tests may leave
    # shared_task registrations, which every new app merges.
    producer = QueueTasks(
        name=APP_NAME, broker_url=url, config=QueueConfig(enqueue_unknown_tasks=True)
    )
    timer = AsyncTimer(app=app)
    out.schedule = timer.add_task("add", 20, 22, trigger=CronTrigger(hour=3, minute=30)).id
    async with app:
        await timer.start()  # stores the schedule record; its tick is hours away
        await timer.stop()
        for i in range(5):
            task = await app.add_task("add", i, 100, timeout=10)
            assert task is not None and task.status == "success"
            out.success.append(str(task.uuid))
        echo = await app.enqueue("echo", (XSS,), {"note": XSS}, timeout=10)
        assert echo is not None and echo.status == "success"
        out.xss = str(echo.uuid)
        for message in ("disk on fire", "no such user"):
            task = await app.add_task("boom", message, timeout=10)
            assert task is not None and task.status == "error"
            out.errors.append(str(task.uuid))
        flaky = await app.add_task("flaky")
        assert flaky is not None
        final = await app.wait(flaky.uuid, 10)
        assert final is not None and final.status == "error"
        out.flaky, out.flaky_child = str(flaky.uuid), str(final.uuid)
        for i in range(dead_letters):
            dead = await producer.add_task("later", 4 + i)
            assert dead is not None
            if i == 0:
                out.dead = str(dead.uuid)
            else:
                out.more_dead.append(str(dead.uuid))
        for _ in range(200):
            if (await app.broker.stats())["dead"] == dead_letters:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the unknown task was not dead-lettered")
        delayed = await app.enqueue("add", (1, 2), delay=3600)
        assert delayed is not None
        assert await app.cancel(delayed.uuid, "not needed") == "cancelled"
        out.cancelled = str(delayed.uuid)
        queued = await app.enqueue("add", (7, 8), queue="nobody-listens")
        assert queued is not None
        out.queued = str(queued.uuid)
    await producer.broker.storage.stop()
    return out


def fill(url: str, dead_letters: int = 1) -> Filled:
    """Run a real worker in-process over a known set of tasks, then stop it. Records:
    6 success (5 add, 1 echo with a script in its args), 3 error (2 boom, the last attempt of
    flaky) plus one per dead letter (an unknown task's record is an error too), 1 retry
    (flaky's first attempt), 1 cancel, 1 new (queued in a queue no worker listens to); and
    `dead_letters` dead letters, one timer schedule ("add" daily at 03:30 UTC)."""
    return asyncio.run(_fill(url, dead_letters))


class Served:
    """The dashboard under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class WorkerProcess:
    """`python -m qtasks -A webview_worker_app:app run` against `url`."""

    def __init__(self, url: str, log: Path, fixed: bool = False) -> None:
        env = {
            **os.environ,
            "QT_URL": url,
            "QT_FIXED": "1" if fixed else "0",
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qtasks",
                "-A",
                "webview_worker_app:app",
                "run",
                "--log-level",
                "warning",
            ],
            cwd=HERE,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
