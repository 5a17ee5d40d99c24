"""Text that UTF-8 refuses, in a task's result or in its error, and a result over the cap,
against a real redis-server.

Python strings may hold lone surrogates (`os.fsdecode` makes them of undecodable bytes); the
JSON encoder keeps them, and the Redis client refuses them only when a write is packed. A final
write batches several tasks, so one such result used to fail the writes of its neighbours too,
and every task of the batch was left to its lease: run again although it had finished. A
result over Redis' 512 MiB limit would fail its batch the same way once sent, so a result over
`config.max_result_bytes` ends its task as `error` before the write is built.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis_test_support import async_app

N_OK = 30


async def test_a_result_or_error_the_store_refuses_fails_its_task_alone(redis_url: str) -> None:
    kinds = ["bad_result", "bad_error", "too_big", *(f"ok{i}" for i in range(N_OK))]
    app = async_app(redis_url, name="text", max_tasks_process=len(kinds), max_result_bytes=4096)
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
        if kind == "too_big":
            return "x" * 5000
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
    too_big = records["too_big"]
    assert too_big.status == "error" and "ResultTooLargeError" in too_big.traceback
    assert {kind: r.status for kind, r in records.items() if kind.startswith("ok")} == {
        f"ok{i}": "success" for i in range(N_OK)
    }
    assert all(n == 1 for n in runs.values()), runs


async def test_an_id_or_reason_utf8_refuses_is_answered_not_raised(redis_url: str) -> None:
    # A command line's undecodable bytes reach `app.get` and friends as lone surrogates
    # (`os.fsdecode`); the client used to raise UnicodeEncodeError on sending them.
    app = async_app(redis_url, name="ids", enqueue_unknown_tasks=True)
    bad_id = "\udcff"
    assert await app.get(bad_id) is None
    assert await app.wait(bad_id, timeout=5) is None
    assert await app.retry(bad_id) is None
    assert await app.cancel(bad_id, "why") == "unknown"
    queued = await app.add_task("remote")
    assert await app.cancel(queued.uuid, "file \udcff is gone") == "cancelled"
    record = await app.get(queued.uuid)
    assert record is not None and record.status == "cancel"
    assert record.cancel_reason == "file \\udcff is gone"
