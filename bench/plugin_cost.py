"""CPU cost per task of the OpenTelemetry and Sentry plugins, producer and worker side.

    uv run python bench/plugin_cost.py [--n 5000] [--repeat 5] [--tracing]

Each run is a fresh process (Sentry's client is process-global) with the asyncio app on the
in-memory broker: it enqueues N tasks (the producer phase), then starts a worker and waits for
the N-th execution (the worker phase). The figure is `time.process_time` per task, which is
steadier than wall time on a shared machine (the end-to-end plugin rows of `bench/run.py`
move by tens of percent between rounds there); variants alternate within each repeat and the
table shows medians. Variants: "none" (no plugin), "otel" (`OpenTelemetryPlugin`, API only, no
SDK, as in `bench/run.py`), "client" (`sentry_sdk.init` only, so its default integrations),
"sentry" (the client and `SentryPlugin`). The last two columns are what each plugin adds:
otel minus none, sentry minus client. No `traces_sample_rate` unless `--tracing`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _init_sentry(tracing: bool) -> None:
    import sentry_sdk
    from qtasks_bench import _DropTransport

    options: dict[str, Any] = {"traces_sample_rate": 1.0} if tracing else {}
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=_DropTransport, **options)


async def _measure(n: int, variant: str, tracing: bool) -> dict[str, float]:
    from qtasks.asyncio import QueueTasks

    app = QueueTasks(name="cost", broker_url="memory://cost")
    done = asyncio.Event()
    seen = [0]

    @app.task(name="noop")
    async def noop() -> None:
        seen[0] += 1
        if seen[0] == n:
            done.set()

    if variant == "otel":
        from qtasks.otel import OpenTelemetryPlugin

        app.add_plugin(OpenTelemetryPlugin())
    if variant in ("client", "sentry"):
        _init_sentry(tracing)
    if variant == "sentry":
        from qtasks.sentry import SentryPlugin

        app.add_plugin(SentryPlugin())
    for _ in range(50):  # warm-up: imports, first-call caches
        await app.add_task("noop")
    await app.flush_all()
    start = time.process_time()
    for _ in range(n):
        await app.add_task("noop")
    produced = time.process_time()
    await app.start()
    await asyncio.wait_for(done.wait(), 120)
    consumed = time.process_time()
    await app.stop(0)
    return {"producer": (produced - start) / n * 1e6, "worker": (consumed - produced) / n * 1e6}


def _child(args: argparse.Namespace) -> None:
    result = asyncio.run(_measure(args.n, args.variant, args.tracing))
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tracing", action="store_true", help="traces_sample_rate=1.0")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        _child(args)
        return
    variants = ("none", "otel", "client", "sentry")
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for _ in range(args.repeat):
        for variant, results in runs.items():
            cmd = [sys.executable, __file__, "--variant", variant, "--n", str(args.n)]
            if args.tracing:
                cmd.append("--tracing")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"CPU us per task, median of {args.repeat} runs of {args.n} tasks"
        f"{' (tracing on)' if args.tracing else ''}"
    )
    print(f"{'side':<10}" + "".join(f"{v:>10}" for v in variants) + f"{'+otel':>10}{'+sentry':>10}")
    for side in ("producer", "worker"):
        m = {v: statistics.median(r[side] for r in runs[v]) for v in variants}
        cells = "".join(f"{m[v]:>10.1f}" for v in variants)
        print(f"{side:<10}{cells}{m['otel'] - m['none']:>10.1f}{m['sentry'] - m['client']:>10.1f}")


if __name__ == "__main__":
    main()
