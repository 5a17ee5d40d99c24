"""`qtasks demo` / `python -m qtasks demo`: an app run end to end in memory, no server needed.

It registers a few kinds of task (async, sync in a thread, a generator, one that fails then
succeeds on retry, one with a priority), runs a worker in this process, enqueues them in bulk and
prints each result as it arrives.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from qtasks.asyncio import QueueTasks
from qtasks.schemas.task import Task


def build_app() -> QueueTasks:
    app = QueueTasks(name="demo", broker_url="memory://demo")
    app.config.max_tasks_process = 4
    attempts: dict[str, int] = {}

    @app.task(name="greet", description="an async task")
    async def greet(name: str) -> str:
        await asyncio.sleep(0.05)
        return f"hello, {name}"

    @app.task(name="fib", description="a sync task, run in a thread")
    def fib(n: int) -> int:
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a

    @app.task(name="squares", description="a generator task")
    def squares(n: int) -> Any:
        for i in range(n):
            yield i * i

    @app.task(name="flaky", retry=2, retry_backoff=0.05, description="fails once, then works")
    async def flaky(key: str) -> str:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] == 1:
            raise ConnectionError("transient failure")
        return f"{key} ok after {attempts[key]} attempts"

    @app.task(name="urgent", priority=-1, description="runs before the others queued with it")
    async def urgent() -> str:
        return "done first"

    return app


def _line(task: Task, started: float) -> str:
    elapsed = (time.monotonic() - started) * 1000
    shown = task.returning if task.status == "success" else task.status
    return f"{elapsed:7.1f} ms  {task.task_name:<8} {task.status:<8} {shown!r}"


async def run(out: Any = sys.stdout) -> int:
    app = build_app()
    calls = [
        ("greet", ("world",)),
        ("fib", (30,)),
        ("squares", (5,)),
        ("flaky", ("job-1",)),
        ("urgent", ()),
        ("greet", ("qtasks",)),
    ]
    started = time.monotonic()
    tasks = await app.add_tasks([(name, args) for name, args in calls])
    print(f"enqueued {len(tasks)} tasks in memory; starting a worker", file=out)
    async with app:
        waits = [app.wait(task.uuid, timeout=10) for task in tasks]
        failures = 0
        for done, future in enumerate(asyncio.as_completed(waits), 1):
            task = await future
            if task is None:
                failures += 1
                print("timed out waiting for a task", file=out)
                continue
            failures += task.status != "success"
            print(f"[{done}/{len(tasks)}] {_line(task, started)}", file=out)
    print("all tasks finished" if not failures else f"{failures} task(s) failed", file=out)
    return 1 if failures else 0


def main() -> int:
    return asyncio.run(run())
