"""taskiq 0.13 + taskiq-redis on the bench work (see ../common.py).

`RedisStreamBroker` (the taskiq-redis broker with acknowledgements, the closest to qtasks'
at-least-once leases), reading from the stream's start so a pre-filled queue is seen, and
`RedisAsyncResultBackend` for round trips. Worker: `taskiq worker --workers 1` with its
defaults (100 concurrent async tasks).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common
import redis.asyncio as aredis
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
broker = RedisStreamBroker(URL, consumer_id="0").with_result_backend(RedisAsyncResultBackend(URL))
_clients: dict[str, Any] = {}
_counter = common.NoopCounter(common.DRAIN_N)
LOW, HIGH = common.marks()


@broker.task(task_name="incr")
async def incr() -> None:
    client = _clients.get("c")
    if client is None:
        client = _clients["c"] = aredis.Redis.from_url(URL)
    n = await client.incr(common.COUNT_KEY)
    if n in (LOW, HIGH):
        await client.rpush(common.MARK_KEY, n)


@broker.task(task_name="noop")
async def noop() -> int:
    hit = _counter.hit()
    if hit is not None:
        common.report_sync(common.client(URL), hit)
    return 1


async def _e2e() -> dict[str, Any]:
    await broker.startup()
    client = common.client(URL)
    for _ in range(LOW):
        await incr.kiq()
    common.wait_mark(client, LOW)
    start = time.perf_counter()
    for _ in range(common.N):
        await incr.kiq()
    enqueued = time.perf_counter() - start
    common.wait_mark(client, HIGH)
    total = time.perf_counter() - start
    return {"rate": common.N / total, "enqueue_rate": common.N / enqueued}


async def _enqueue(count: int) -> dict[str, Any]:
    await broker.startup()
    for _ in range(200):
        await noop.kiq()
    start = time.perf_counter()
    for _ in range(count):
        await noop.kiq()
    return {"rate": count / (time.perf_counter() - start)}


async def _latency() -> dict[str, Any]:
    await broker.startup()
    most, budget = common.latency_budget()
    for _ in range(5):
        await (await noop.kiq()).wait_result(timeout=30)
    samples: list[float] = []
    stop = time.monotonic() + budget
    while len(samples) < most and time.monotonic() < stop:
        t0 = time.perf_counter()
        result = await (await noop.kiq()).wait_result(timeout=30)
        samples.append(time.perf_counter() - t0)
        assert not result.is_err
    return common.latency_summary(samples)


def main() -> None:
    args = common.parser(__doc__ or "").parse_args()
    here = str(Path(__file__).resolve().parent)
    if args.command == "worker":
        os.environ["PYTHONPATH"] = os.pathsep.join([here, str(Path(here).parent)])
        taskiq = str(Path(sys.executable).parent / "taskiq")
        os.execv(taskiq, [taskiq, "worker", "taskiq_bench:broker", "--workers", "1"])
    if args.command == "e2e":
        result = asyncio.run(_e2e())
    elif args.command == "enqueue":
        result = asyncio.run(_enqueue(common.N))
    elif args.command == "fill":
        result = asyncio.run(_enqueue(common.DRAIN_N))
    elif args.command == "drain":
        result = common.drain_result(common.client(URL))
    elif args.command == "latency":
        result = asyncio.run(_latency())
    else:
        raise SystemExit(f"unsupported: {args.command}")
    common.emit(result)


if __name__ == "__main__":
    main()
