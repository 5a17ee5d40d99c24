"""Drain rate and CPU per task of the sync worker (`SyncThreadWorker`); prints figures.

    uv run python bench/sync_cost.py [--n 10000] [--repeat 5] [--src OTHER_TREE ...]

Each run is a fresh process with its own `redis-server`: it pre-fills N no-op tasks with
`app.add_tasks`, then starts the sync app's worker in-process and waits until the worker has
written every final record. Figures: the drain rate (tasks/s, wall time) and the worker's CPU
per task (`time.process_time`, the whole process: claim loop, pool threads, batcher), which is
steadier than wall time on a shared machine. `--src` adds other source trees (e.g. a
`git archive` of the commit before a change) to compare; trees alternate within each repeat and
the table shows medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

CHUNK = 1000
LOOPS = int(os.environ.get("BENCH_CLAIM_LOOPS", "1"))


def _measure(n: int) -> dict[str, float]:
    from qtasks import QueueTasks
    from qtasks.testing import RedisServer

    with RedisServer() as server:
        app = QueueTasks(name="cost", broker_url=server.url)
        ran = [0]
        last = threading.Event()

        @app.task(name="noop")
        def noop() -> None:
            ran[0] += 1  # racy across pool threads, so only a hint to start polling
            if ran[0] >= n:
                last.set()

        for start in range(0, n, CHUNK):
            app.add_tasks([("noop",)] * min(CHUNK, n - start))
        worker: Any = app.worker
        wall, cpu = time.perf_counter(), time.process_time()
        app.start(num_workers=LOOPS)
        last.wait(300)
        # A body that ran is not a task done: wait for the final writes (the slot frees after).
        while worker.processed < n:
            time.sleep(0.001)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        app.stop()
    return {"rate": n / wall, "cpu_us": cpu / n * 1e6}


def _tree_env(tree: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if tree:
        # qtasks is a pkgutil namespace: the tree's packages come first on sys.path.
        srcs = [str(p) for p in sorted(Path(tree, "packages").glob("*/src"))]
        env["PYTHONPATH"] = os.pathsep.join([*srcs, env.get("PYTHONPATH", "")])
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--src", action="append", default=[], help="another source tree to compare")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_measure(args.n)))
        return
    trees: list[str | None] = [None, *args.src]
    runs: dict[str | None, list[dict[str, float]]] = {tree: [] for tree in trees}
    for _ in range(args.repeat):
        for tree in trees:
            cmd = [sys.executable, __file__, "--child", "--n", str(args.n)]
            out = subprocess.run(
                cmd, check=True, capture_output=True, text=True, env=_tree_env(tree)
            ).stdout
            runs[tree].append(json.loads(out.strip().splitlines()[-1]))
    print(f"sync worker drain of {args.n} no-op tasks, median of {args.repeat} runs")
    print(f"{'tree':<40}{'tasks/s':>10}{'CPU us/task':>14}")
    for tree, results in runs.items():
        rate = statistics.median(r["rate"] for r in results)
        cpu = statistics.median(r["cpu_us"] for r in results)
        print(f"{tree or 'this tree':<40}{rate:>10.0f}{cpu:>14.1f}")


if __name__ == "__main__":
    main()
