"""A worker process for the crash tests: `python redis_worker_app.py`.

Environment: QT_URL (Redis URL), QT_LEDGER (append-only evidence file), QT_FLAVOUR (sync or
async), plus any QTASKS_* config override (lease, heartbeat, concurrency...). Task bodies write
`start KEY PID` and `end KEY PID` lines with O_APPEND, outside Redis, so a Redis fault cannot
corrupt the evidence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

URL = os.environ["QT_URL"]
LEDGER = os.environ["QT_LEDGER"]
FLAVOUR = os.environ.get("QT_FLAVOUR", "sync")


def note(event: str, key: str) -> None:
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def build() -> Any:
    if FLAVOUR == "async":
        from qtasks.asyncio import QueueTasks as AsyncQueueTasks

        app = AsyncQueueTasks(name="QueueTasks", broker_url=URL)

        @app.task(name="work")
        async def work(key: str, seconds: float = 0.0) -> str:
            note("start", key)
            await asyncio.sleep(seconds)
            note("end", key)
            return key

        return app

    from qtasks import QueueTasks

    app = QueueTasks(name="QueueTasks", broker_url=URL)

    @app.task(name="work")
    def work_sync(key: str, seconds: float = 0.0) -> str:
        note("start", key)
        time.sleep(seconds)
        note("end", key)
        return key

    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    build().run_forever()
