"""Celery 5.7 with Redis as broker and result backend on the bench work (see ../common.py).

Worker: `celery worker --pool threads --concurrency 10` (one process, as many slots as qtasks'
default; Celery's own default pool forks a child per core), without gossip, mingle and
heartbeats. Round trips: `AsyncResult.get()` (the Redis backend is woken by pub/sub).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common
import redis
from celery import Celery

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("celery_bench", broker=URL, backend=URL)
app.conf.broker_connection_retry_on_startup = True
_client = redis.Redis.from_url(URL)
_counter = common.NoopCounter(common.DRAIN_N)
LOW, HIGH = common.marks()


@app.task(name="incr", ignore_result=True)
def incr() -> None:
    n = _client.incr(common.COUNT_KEY)
    if n in (LOW, HIGH):
        _client.rpush(common.MARK_KEY, n)


@app.task(name="noop")
def noop() -> int:
    hit = _counter.hit()
    if hit is not None:
        common.report_sync(_client, hit)
    return 1


def _e2e() -> dict[str, Any]:
    client = common.client(URL)
    for _ in range(LOW):
        incr.delay()
    common.wait_mark(client, LOW)
    start = time.perf_counter()
    for _ in range(common.N):
        incr.delay()
    enqueued = time.perf_counter() - start
    common.wait_mark(client, HIGH)
    total = time.perf_counter() - start
    return {"rate": common.N / total, "enqueue_rate": common.N / enqueued}


def _enqueue(count: int) -> dict[str, Any]:
    for _ in range(200):
        noop.delay()
    start = time.perf_counter()
    for _ in range(count):
        noop.delay()
    return {"rate": count / (time.perf_counter() - start)}


def _latency() -> dict[str, Any]:
    most, budget = common.latency_budget()
    for _ in range(5):
        noop.delay().get(timeout=30)
    samples: list[float] = []
    stop = time.monotonic() + budget
    while len(samples) < most and time.monotonic() < stop:
        t0 = time.perf_counter()
        noop.delay().get(timeout=30)
        samples.append(time.perf_counter() - t0)
    return common.latency_summary(samples)


def main() -> None:
    args = common.parser(__doc__ or "").parse_args()
    here = str(Path(__file__).resolve().parent)
    if args.command == "worker":
        os.environ["PYTHONPATH"] = os.pathsep.join([here, str(Path(here).parent)])
        exe = str(Path(sys.executable).parent / "celery")
        os.execv(
            exe,
            [
                exe,
                "-A",
                "celery_bench",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "10",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
        )
    if args.command == "e2e":
        result = _e2e()
    elif args.command == "enqueue":
        result = _enqueue(common.N)
    elif args.command == "fill":
        result = _enqueue(common.DRAIN_N)
    elif args.command == "drain":
        result = common.drain_result(common.client(URL))
    elif args.command == "latency":
        result = _latency()
    else:
        raise SystemExit(f"unsupported: {args.command}")
    common.emit(result)


if __name__ == "__main__":
    main()
