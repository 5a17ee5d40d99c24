"""What every bench script shares; stdlib only, since peers run it in their own venvs.

A framework script (`qtasks_bench.py`, `peers/*.py`) has two kinds of subcommands, both driven
by `run.py`:

* `worker --kind K`: runs one worker process until SIGTERM/SIGKILL, with the tasks of kind K.
* a scenario (`e2e`, `enqueue`, `bulk`, `fill`, `drain`, `latency`, ...): the producer side;
  prints one JSON object on its last stdout line.

Task bodies report progress through Redis lists, so a producer blocks (BLPOP) instead of
polling: an `incr` task INCRs `bench:count` and pushes the count to `bench:mark` when it reaches
a mark (the end of the warm-up, the end of the run); a `noop` task counts in process memory and
pushes the elapsed time between the first and the N-th run to `bench:drain`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

COUNT_KEY = "bench:count"
MARK_KEY = "bench:mark"
DRAIN_KEY = "bench:drain"
RSS_KEY = "bench:rss"

WARMUP = int(os.environ.get("BENCH_WARMUP", "50"))
N = int(os.environ.get("BENCH_N", "5000"))
DRAIN_N = int(os.environ.get("BENCH_DRAIN_N", "20000"))
RSS_MARKS = tuple(int(x) for x in os.environ.get("BENCH_RSS_MARKS", "").split(",") if x)


def client(url: str) -> Any:
    """A sync redis-py client for the bench's own reads (no socket timeout: it blocks on marks)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=None)


def marks() -> tuple[int, int]:
    """Counts at which an `incr` task pushes a mark: end of warm-up, end of the run."""
    return WARMUP, WARMUP + N


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class NoopCounter:
    """In-process counter for `noop` tasks (drain). Thread-safe; the N-th call reports the
    time since the first call (and, at the RSS marks, the worker's resident memory)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.first = 0.0
        self.lock = threading.Lock()

    def hit(self) -> tuple[int, float] | None:
        """-> (count, seconds since the first hit) when a report is due, else None."""
        with self.lock:
            self.n += 1
            n = self.n
            if n == 1:
                self.first = time.perf_counter()
        if n == self.total or n in RSS_MARKS:
            return n, time.perf_counter() - self.first
        return None


def report_sync(client: Any, hit: tuple[int, float]) -> None:
    """Push a noop report with a sync redis-py client (rare: twice per run)."""
    n, elapsed = hit
    if n in RSS_MARKS:
        client.rpush(RSS_KEY, json.dumps({"n": n, "rss": rss_bytes()}))
    if n == DRAIN_N:
        client.rpush(DRAIN_KEY, json.dumps({"n": n, "elapsed": elapsed}))


def drain_result(client: Any, timeout: float = 600) -> dict[str, Any]:
    """Block until the worker reports the drain; -> rate over N-1 intervals."""
    got = client.blpop([DRAIN_KEY], timeout)
    if got is None:
        raise TimeoutError("drain did not finish")
    data = json.loads(got[1])
    return {"rate": (data["n"] - 1) / data["elapsed"], "seconds": data["elapsed"]}


def wait_mark(client: Any, want: int, timeout: float = 300) -> None:
    while True:
        got = client.blpop([MARK_KEY], timeout)
        if got is None:
            raise TimeoutError(f"mark {want} not reached")
        if int(got[1]) >= want:
            return


CPU_PARTS = ("producer", "worker", "redis")


def cpu_seconds(client: Any) -> tuple[float, float, float] | None:
    """CPU seconds used so far by this process, the worker (`BENCH_WORKER_PID`, set by
    `run.py`) and Redis; None without a worker pid or `/proc`."""
    pid = os.environ.get("BENCH_WORKER_PID")
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    worker = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    info = client.info("cpu")
    return time.process_time(), worker, info["used_cpu_user"] + info["used_cpu_sys"]


def cpu_per_task(
    before: tuple[float, float, float] | None, after: tuple[float, float, float] | None, n: int
) -> dict[str, float]:
    """Microseconds of CPU per task of the producer, the worker and Redis, and their total: on
    this two-core machine, where end to end is CPU-bound, steadier than the rate."""
    if before is None or after is None:
        return {}
    out = {part: (b - a) / n * 1e6 for part, a, b in zip(CPU_PARTS, before, after, strict=True)}
    out["total"] = sum(out.values())
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def latency_summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "samples": len(samples),
    }


def latency_budget() -> tuple[int, float]:
    """(max samples, max seconds) for a round-trip run."""
    return int(os.environ.get("BENCH_LAT_N", "500")), float(os.environ.get("BENCH_LAT_S", "15"))


def emit(result: dict[str, Any]) -> None:
    """The result line `run.py` reads (the last line of stdout)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("command")
    p.add_argument("--url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--kind", default="incr", help="worker: which tasks (incr, noop, ...)")
    p.add_argument("--variant", default="", help="framework-specific option")
    return p
