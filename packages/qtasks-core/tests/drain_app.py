"""A worker process for the drain tests: `python drain_app.py KIND LEDGER TASK_SECONDS N`.

It enqueues N tasks in memory, runs the app until signalled, then prints each task's status
as JSON. Each task body appends `start <id>` / `end <id>` lines to LEDGER.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time

from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks


def main() -> None:
    kind, ledger, seconds, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    logging.basicConfig(level=logging.INFO)
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    app: QueueTasks | AsyncQueueTasks
    if kind == "sync":
        app = QueueTasks(name="drain", broker_url="memory://")

        @app.task(name="work")
        def work(i: int) -> int:
            os.write(fd, f"start {i} {time.time()}\n".encode())
            time.sleep(seconds)
            os.write(fd, f"end {i} {time.time()}\n".encode())
            return i
    else:
        app = AsyncQueueTasks(name="drain", broker_url="memory://")

        @app.task(name="work")
        async def work(i: int) -> int:
            os.write(fd, f"start {i} {time.time()}\n".encode())
            await asyncio.sleep(seconds)
            os.write(fd, f"end {i} {time.time()}\n".encode())
            return i

    app.config.max_tasks_process = 2
    app.config.prefetch = 2
    app.config.shutdown_grace = float(os.environ.get("GRACE", "5"))
    if isinstance(app, AsyncQueueTasks):
        tasks = asyncio.run(app.add_tasks([("work", (i,)) for i in range(count)]))
    else:
        tasks = app.add_tasks([("work", (i,)) for i in range(count)])
    app.run_forever(num_workers=1)

    def status(uuid: object) -> str:
        record = app.get(uuid)
        if not isinstance(record, object) or asyncio.iscoroutine(record):
            record = asyncio.run(record)
        return str(record.status) if record is not None else "missing"

    print(json.dumps({str(t.args[0]): status(t.uuid) for t in tasks}), flush=True)


if __name__ == "__main__":
    main()
