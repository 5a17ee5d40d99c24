"""qtasks on the bench work (see `common.py` for the subcommand protocol).

Variants (`--variant`): `async` (default: the asyncio app, `AsyncWorker`), `sync` (the sync
app, `SyncThreadWorker`, sync task bodies), `otel` / `sentry` (async, with
`qtasks.otel.OpenTelemetryPlugin` without an SDK, or `qtasks.sentry.SentryPlugin` with an
initialised client that drops what it would send), on both the producer and the worker.
Every run uses the default config.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import redis.asyncio as aredis

CHUNK = 1000


def _plugins(app: Any, variant: str) -> None:
    if variant == "otel":
        from qtasks.otel import OpenTelemetryPlugin

        app.add_plugin(OpenTelemetryPlugin())
    elif variant in ("sentry", "sentry-sdk"):
        import sentry_sdk

        # A real client (so the plugin works as in production) whose transport drops events:
        # the bench sends nothing anywhere. "sentry-sdk": the client alone, with its default
        # integrations (its Redis integration wraps every redis-py call), and no plugin.
        sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=_DropTransport)
        if variant == "sentry":
            from qtasks.sentry import SentryPlugin

            app.add_plugin(SentryPlugin())


class _DropTransport:
    def __init__(self, options: Any = None) -> None:
        self.options = options

    def capture_envelope(self, envelope: Any) -> None:
        return None

    def flush(self, timeout: float, callback: Any = None) -> None:
        return None

    def kill(self) -> None:
        return None

    def record_lost_event(self, *args: Any, **kwargs: Any) -> None:
        return None

    def is_healthy(self) -> bool:
        return True


def make_app(url: str, variant: str) -> Any:
    """The app with the bench tasks; the task bodies close over lazily made clients."""
    low, high = common.marks()
    counter = common.NoopCounter(common.DRAIN_N)
    sync_client = common.client(url)
    if variant == "sync":
        from qtasks import QueueTasks as SyncApp

        app: Any = SyncApp(broker_url=url)

        @app.task(name="incr")
        def incr() -> None:
            n = sync_client.incr(common.COUNT_KEY)
            if n in (low, high):
                sync_client.rpush(common.MARK_KEY, n)

        @app.task(name="noop")
        def noop() -> int:
            hit = counter.hit()
            if hit is not None:
                common.report_sync(sync_client, hit)
            return 1

    else:
        from qtasks.asyncio import QueueTasks as AsyncApp

        app = AsyncApp(broker_url=url)
        clients: dict[str, Any] = {}

        @app.task(name="incr")
        async def aincr() -> None:
            client = clients.get("c")
            if client is None:
                client = clients["c"] = aredis.Redis.from_url(url)
            n = await client.incr(common.COUNT_KEY)
            if n in (low, high):
                await client.rpush(common.MARK_KEY, n)

        @app.task(name="noop")
        async def anoop() -> int:
            hit = counter.hit()
            if hit is not None:
                common.report_sync(sync_client, hit)
            return 1

    _plugins(app, variant)
    return app


def worker(url: str, variant: str) -> None:
    app = make_app(url, variant)
    loops = os.environ.get("BENCH_CLAIM_LOOPS")
    app.run_forever(num_workers=int(loops)) if loops else app.run_forever()


# -- producers ----------------------------------------------------------------------------------


async def _e2e_async(url: str, variant: str) -> dict[str, Any]:
    app = make_app(url, variant)
    client = common.client(url)
    low, high = common.marks()
    for _ in range(low):
        await app.add_task("incr")
    common.wait_mark(client, low)
    cpu = common.cpu_seconds(client)
    start = time.perf_counter()
    for _ in range(common.N):
        await app.add_task("incr")
    enqueued = time.perf_counter() - start
    common.wait_mark(client, high)
    total = time.perf_counter() - start
    return {
        "rate": common.N / total,
        "enqueue_rate": common.N / enqueued,
        "cpu_us": common.cpu_per_task(cpu, common.cpu_seconds(client), common.N),
    }


def _e2e_sync(url: str) -> dict[str, Any]:
    app = make_app(url, "sync")
    client = common.client(url)
    low, high = common.marks()
    for _ in range(low):
        app.add_task("incr")
    common.wait_mark(client, low)
    cpu = common.cpu_seconds(client)
    start = time.perf_counter()
    for _ in range(common.N):
        app.add_task("incr")
    enqueued = time.perf_counter() - start
    common.wait_mark(client, high)
    total = time.perf_counter() - start
    return {
        "rate": common.N / total,
        "enqueue_rate": common.N / enqueued,
        "cpu_us": common.cpu_per_task(cpu, common.cpu_seconds(client), common.N),
    }


async def _enqueue(url: str) -> dict[str, Any]:
    app = make_app(url, "async")
    for _ in range(200):
        await app.add_task("noop")
    start = time.perf_counter()
    for _ in range(common.N):
        await app.add_task("noop")
    return {"rate": common.N / (time.perf_counter() - start)}


def _enqueue_sync(url: str) -> dict[str, Any]:
    app = make_app(url, "sync")
    for _ in range(200):
        app.add_task("noop")
    start = time.perf_counter()
    for _ in range(common.N):
        app.add_task("noop")
    return {"rate": common.N / (time.perf_counter() - start)}


async def _bulk(url: str, total: int, warm: bool = True) -> dict[str, Any]:
    app = make_app(url, "async")
    if warm:
        await app.add_tasks([("noop",)] * CHUNK)
    start = time.perf_counter()
    done = 0
    while done < total:
        n = min(CHUNK, total - done)
        await app.add_tasks([("noop",)] * n)
        done += n
    return {"rate": total / (time.perf_counter() - start)}


async def _latency(url: str) -> dict[str, Any]:
    app = make_app(url, "async")
    most, budget = common.latency_budget()
    for _ in range(20):
        await app.add_task("noop", timeout=10)
    samples: list[float] = []
    stop = time.monotonic() + budget
    while len(samples) < most and time.monotonic() < stop:
        t0 = time.perf_counter()
        task = await app.add_task("noop", timeout=10)
        samples.append(time.perf_counter() - t0)
        assert task is not None and task.status == "success", task
    return common.latency_summary(samples)


def _redis_memory(url: str) -> dict[str, Any]:
    """Redis bytes per finished record: `used_memory` before a fill and after its drain."""
    client = common.client(url)
    before = int(os.environ["BENCH_MEM_BEFORE"])
    after = int(client.info("memory")["used_memory"])
    return {"bytes_per_record": (after - before) / common.DRAIN_N}


def main() -> None:
    args = common.parser(__doc__ or "").parse_args()
    url, variant = args.url, args.variant or "async"
    if args.command == "worker":
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            worker(url, variant)
        return
    if args.command == "e2e":
        result = _e2e_sync(url) if variant == "sync" else asyncio.run(_e2e_async(url, variant))
    elif args.command == "enqueue":
        result = _enqueue_sync(url) if variant == "sync" else asyncio.run(_enqueue(url))
    elif args.command == "bulk":
        result = asyncio.run(_bulk(url, 20_000))
    elif args.command == "fill":
        if variant == "sync":
            app = make_app(url, "sync")
            start = time.perf_counter()
            for i in range(0, common.DRAIN_N, CHUNK):
                app.add_tasks([("noop",)] * min(CHUNK, common.DRAIN_N - i))
            result = {"rate": common.DRAIN_N / (time.perf_counter() - start)}
        else:
            result = asyncio.run(_bulk(url, common.DRAIN_N, warm=False))
    elif args.command == "drain":
        result = common.drain_result(common.client(url))
    elif args.command == "latency":
        result = asyncio.run(_latency(url))
    elif args.command == "memory":
        result = _redis_memory(url)
    else:
        raise SystemExit(f"unknown command {args.command}")
    common.emit(result)


if __name__ == "__main__":
    main()
