"""RQ 2.12 on the bench work (see ../common.py).

Worker: `rq worker --worker-class rq.worker.SimpleWorker` (jobs run in the worker process; RQ's
default worker forks a child per job, which is far slower). Bulk enqueue: `Queue.enqueue_many`
(one pipeline). Round trips: `Job.latest_result(timeout=...)`, which blocks on RQ's result
stream.
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
from rq import Queue

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_client = redis.Redis.from_url(URL)
_counter = common.NoopCounter(common.DRAIN_N)
LOW, HIGH = common.marks()
CHUNK = 1000


def incr() -> None:
    n = _client.incr(common.COUNT_KEY)
    if n in (LOW, HIGH):
        _client.rpush(common.MARK_KEY, n)


def noop() -> int:
    hit = _counter.hit()
    if hit is not None:
        common.report_sync(_client, hit)
    return 1


def _queue() -> Queue:
    return Queue("default", connection=redis.Redis.from_url(URL))


def _e2e() -> dict[str, Any]:
    q = _queue()
    client = common.client(URL)
    for _ in range(LOW):
        q.enqueue("rq_bench.incr")
    common.wait_mark(client, LOW)
    start = time.perf_counter()
    for _ in range(common.N):
        q.enqueue("rq_bench.incr")
    enqueued = time.perf_counter() - start
    common.wait_mark(client, HIGH)
    total = time.perf_counter() - start
    return {"rate": common.N / total, "enqueue_rate": common.N / enqueued}


def _enqueue(count: int) -> dict[str, Any]:
    q = _queue()
    for _ in range(200):
        q.enqueue("rq_bench.noop")
    start = time.perf_counter()
    for _ in range(count):
        q.enqueue("rq_bench.noop")
    return {"rate": count / (time.perf_counter() - start)}


def _bulk(count: int) -> dict[str, Any]:
    q = _queue()
    start = time.perf_counter()
    for done in range(0, count, CHUNK):
        n = min(CHUNK, count - done)
        q.enqueue_many([Queue.prepare_data("rq_bench.noop") for _ in range(n)])
    return {"rate": count / (time.perf_counter() - start)}


def _latency() -> dict[str, Any]:
    q = _queue()
    most, budget = common.latency_budget()
    for _ in range(3):
        q.enqueue("rq_bench.noop").latest_result(timeout=30)
    samples: list[float] = []
    stop = time.monotonic() + budget
    while len(samples) < most and time.monotonic() < stop:
        t0 = time.perf_counter()
        result = q.enqueue("rq_bench.noop").latest_result(timeout=30)
        samples.append(time.perf_counter() - t0)
        assert result is not None
    return common.latency_summary(samples)


def main() -> None:
    args = common.parser(__doc__ or "").parse_args()
    here = str(Path(__file__).resolve().parent)
    if args.command == "worker":
        os.environ["PYTHONPATH"] = os.pathsep.join([here, str(Path(here).parent)])
        exe = str(Path(sys.executable).parent / "rq")
        os.execv(
            exe,
            [
                exe,
                "worker",
                "--url",
                URL,
                "--worker-class",
                "rq.worker.SimpleWorker",
                "--logging_level",
                "WARNING",
                "default",
            ],
        )
    if args.command == "e2e":
        result = _e2e()
    elif args.command == "enqueue":
        result = _enqueue(common.N)
    elif args.command == "bulk":
        result = _bulk(20_000)
    elif args.command == "fill":
        result = _bulk(common.DRAIN_N)
    elif args.command == "drain":
        result = common.drain_result(common.client(URL))
    elif args.command == "latency":
        result = _latency()
    else:
        raise SystemExit(f"unsupported: {args.command}")
    common.emit(result)


if __name__ == "__main__":
    main()
