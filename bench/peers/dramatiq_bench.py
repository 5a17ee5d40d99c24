"""Dramatiq 2.2 with its Redis broker on the bench work (see ../common.py).

Worker: `dramatiq --processes 1 --threads 8` (one process; Dramatiq's default thread count).
Task bodies are sync (Dramatiq runs actors in threads). Round trips use the `Results`
middleware with its Redis backend (`message.get_result(block=True)`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common
import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
broker = RedisBroker(url=URL)
broker.add_middleware(Results(backend=RedisBackend(url=URL)))
dramatiq.set_broker(broker)
_client = redis.Redis.from_url(URL)
_counter = common.NoopCounter(common.DRAIN_N)
LOW, HIGH = common.marks()


@dramatiq.actor(actor_name="incr")
def incr() -> None:
    n = _client.incr(common.COUNT_KEY)
    if n in (LOW, HIGH):
        _client.rpush(common.MARK_KEY, n)


@dramatiq.actor(actor_name="noop", store_results=True)
def noop() -> int:
    hit = _counter.hit()
    if hit is not None:
        common.report_sync(_client, hit)
    return 1


def _e2e() -> dict[str, Any]:
    client = common.client(URL)
    for _ in range(LOW):
        incr.send()
    common.wait_mark(client, LOW)
    start = time.perf_counter()
    for _ in range(common.N):
        incr.send()
    enqueued = time.perf_counter() - start
    common.wait_mark(client, HIGH)
    total = time.perf_counter() - start
    return {"rate": common.N / total, "enqueue_rate": common.N / enqueued}


def _enqueue(count: int) -> dict[str, Any]:
    for _ in range(200):
        noop.send()
    start = time.perf_counter()
    for _ in range(count):
        noop.send()
    return {"rate": count / (time.perf_counter() - start)}


def _latency() -> dict[str, Any]:
    most, budget = common.latency_budget()
    for _ in range(5):
        noop.send().get_result(block=True, timeout=30_000)
    samples: list[float] = []
    stop = time.monotonic() + budget
    while len(samples) < most and time.monotonic() < stop:
        t0 = time.perf_counter()
        noop.send().get_result(block=True, timeout=30_000)
        samples.append(time.perf_counter() - t0)
    return common.latency_summary(samples)


def main() -> None:
    args = common.parser(__doc__ or "").parse_args()
    here = str(Path(__file__).resolve().parent)
    if args.command == "worker":
        os.environ["PYTHONPATH"] = os.pathsep.join([here, str(Path(here).parent)])
        exe = str(Path(sys.executable).parent / "dramatiq")
        os.execv(exe, [exe, "dramatiq_bench", "--processes", "1", "--threads", "8"])
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
