"""arq 0.28 on the bench work (see ../common.py).

Throughput runs (`e2e`, `drain`) use `poll_delay=0.01` (arq polls its queue; its default is
0.5 s); round trips use arq's defaults (worker `poll_delay=0.5`, `Job.result(poll_delay=0.5)`).
`max_jobs` is arq's default, 10.
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
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SETTINGS = RedisSettings.from_dsn(URL)
_counter = common.NoopCounter(common.DRAIN_N)
LOW, HIGH = common.marks()


async def incr(ctx: dict[str, Any]) -> None:
    n = await ctx["redis"].incr(common.COUNT_KEY)
    if n in (LOW, HIGH):
        await ctx["redis"].rpush(common.MARK_KEY, n)


async def noop(ctx: dict[str, Any]) -> int:
    hit = _counter.hit()
    if hit is not None:
        common.report_sync(common.client(URL), hit)
    return 1


def worker(variant: str) -> None:
    poll = 0.5 if variant == "defaults" else 0.01
    Worker(functions=[incr, noop], redis_settings=SETTINGS, poll_delay=poll).run()


async def _e2e() -> dict[str, Any]:
    pool = await create_pool(SETTINGS)
    client = common.client(URL)
    for _ in range(LOW):
        await pool.enqueue_job("incr")
    common.wait_mark(client, LOW)
    start = time.perf_counter()
    for _ in range(common.N):
        await pool.enqueue_job("incr")
    enqueued = time.perf_counter() - start
    common.wait_mark(client, HIGH)
    total = time.perf_counter() - start
    return {"rate": common.N / total, "enqueue_rate": common.N / enqueued}


async def _enqueue(count: int) -> dict[str, Any]:
    pool = await create_pool(SETTINGS)
    for _ in range(200):
        await pool.enqueue_job("noop")
    start = time.perf_counter()
    for _ in range(count):
        await pool.enqueue_job("noop")
    return {"rate": count / (time.perf_counter() - start)}


async def _latency() -> dict[str, Any]:
    pool = await create_pool(SETTINGS)
    most, budget = common.latency_budget()
    for _ in range(3):
        job = await pool.enqueue_job("noop")
        assert job is not None
        await job.result(timeout=30)
    samples: list[float] = []
    stop = time.monotonic() + budget
    while len(samples) < most and time.monotonic() < stop:
        t0 = time.perf_counter()
        job = await pool.enqueue_job("noop")
        assert job is not None
        await job.result(timeout=30)
        samples.append(time.perf_counter() - t0)
    return common.latency_summary(samples)


def main() -> None:
    args = common.parser(__doc__ or "").parse_args()
    if args.command == "worker":
        worker(args.variant)
        return
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
