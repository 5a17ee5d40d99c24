"""Text that UTF-8 refuses, in a task's result or in its error, against a real redis-server.

Python strings may hold lone surrogates (`os.fsdecode` makes them of undecodable bytes); the
JSON encoder keeps them, and the Redis client refuses them only when a write is packed. A final
write batches several tasks, so one such result used to fail the writes of its neighbours too,
and every task of the batch was left to its lease: run again although it had finished.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis_test_support import async_app

N_OK = 30


async def test_a_result_or_error_utf8_refuses_fails_its_task_alone(redis_url: str) -> None:
    kinds = ["bad_result", "bad_error", *(f"ok{i}" for i in range(N_OK))]
    app = async_app(redis_url, name="text", max_tasks_process=len(kinds))
    runs: dict[str, int] = {}
    all_running, gate = asyncio.Event(), asyncio.Event()

    async def body(kind: str) -> Any:
        runs[kind] = runs.get(kind, 0) + 1
        if len(runs) == len(kinds):
            all_running.set()
        await gate.wait()  # every task finishes at once: their final writes share batches
        if kind == "bad_result":
            return "\udcff"
        if kind == "bad_error":
            raise ValueError("cannot read \udcff")
        return kind

    app.task(name="t")(body)
    queued = [await app.add_task("t", kind) for kind in kinds]
    await app.start()
    try:
        await asyncio.wait_for(all_running.wait(), 10)
        gate.set()
        records = {
            kind: await app.wait(task.uuid, timeout=10)
            for kind, task in zip(kinds, queued, strict=True)
        }
    finally:
        await app.stop()
    assert all(record is not None for record in records.values()), records
    bad_result, bad_error = records["bad_result"], records["bad_error"]
    assert bad_result.status == "error"
    assert "result of task 't' is not valid UTF-8 text" in bad_result.traceback
    assert bad_error.status == "error"
    assert "ValueError: cannot read \\udcff" in bad_error.traceback
    assert {kind: r.status for kind, r in records.items() if kind.startswith("ok")} == {
        f"ok{i}": "success" for i in range(N_OK)
    }
    assert all(n == 1 for n in runs.values()), runs
