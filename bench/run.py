"""Run the whole bench: `uv run python bench/run.py` (about 20 minutes; `--quick`: about 5).

Starts its own `redis-server`, installs each peer into its own venv under the cache dir
(`$QTASKS_BENCH_CACHE`, default `~/.cache/qtasks-bench`; their redis-py pins clash), then runs
every scenario round by round, the frameworks alternating within a round, and prints a markdown
table of medians and ratios (also written as JSON beside the venvs). A peer that fails to
install or to run shows its error in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from qtasks.testing.redis_server import RedisServer, find_redis_server, server_version

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("QTASKS_BENCH_CACHE", Path.home() / ".cache" / "qtasks-bench"))

PEERS: dict[str, list[str]] = {
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4"],
    "arq": ["arq==0.28.0"],
    "dramatiq": ["dramatiq[redis]==2.2.1"],
    "celery": ["celery[redis]==5.7.0"],
    "rq": ["rq==2.12.0"],
}
PEER_NAMES = list(PEERS)
SLOW_DRAIN = 40.0
"""A drain that took longer than this (seconds) in round 1 is not run again."""
FRAMEWORKS = ["qtasks", *PEER_NAMES]


@dataclass
class Settings:
    rounds: int
    n: int
    drain_n: int
    latency_n: int
    latency_s: float
    rss_n: int


FULL = Settings(rounds=3, n=5000, drain_n=20_000, latency_n=500, latency_s=8.0, rss_n=200_000)
QUICK = Settings(rounds=1, n=2000, drain_n=5000, latency_n=200, latency_s=3.0, rss_n=30_000)


@dataclass
class Results:
    values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: dict[str, Any] | None, error: str | None = None) -> None:
        if value is not None:
            self.values.setdefault(key, []).append(value)
        elif error is not None:
            self.errors[key] = error

    def median(self, key: str, metric: str = "rate") -> float | None:
        runs = [v[metric] for v in self.values.get(key, []) if metric in v]
        return statistics.median(runs) if runs else None


# -- environments -------------------------------------------------------------------------------


def peer_python(name: str) -> Path:
    return CACHE / "venvs" / name / "bin" / "python"


def ensure_peer(name: str) -> str | None:
    """Create the peer's venv once (per pinned spec); -> an error message, or None."""
    venv = CACHE / "venvs" / name
    stamp = venv / "bench-spec.txt"
    spec = " ".join(PEERS[name])
    if stamp.exists() and stamp.read_text() == spec and peer_python(name).exists():
        return None
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    if uv:
        steps = [
            [uv, "venv", "-q", "-p", sys.executable, str(venv)],
            [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *PEERS[name]],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *PEERS[name]],
        ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            return f"install failed: {(done.stderr or done.stdout).strip()[-300:]}"
    stamp.write_text(spec)
    return None


class Base:
    """`--base DIR`: a source tree of an older qtasks, run as framework `qtasks-base`."""

    src: Path | None = None


def base_pythonpath() -> str:
    assert Base.src is not None
    return os.pathsep.join(
        str(Base.src / "packages" / name / "src") for name in ("qtasks-core", "qtasks-redis")
    )


def script_of(framework: str) -> tuple[str, str]:
    if framework.startswith("qtasks"):
        return sys.executable, str(HERE / "qtasks_bench.py")
    return str(peer_python(framework)), str(HERE / "peers" / f"{framework}_bench.py")


# -- one run ------------------------------------------------------------------------------------


class Runner:
    def __init__(self, server: RedisServer, settings: Settings, verbose: bool) -> None:
        self.server = server
        self.settings = settings
        self.verbose = verbose
        self.admin = redis.Redis.from_url(server.url, socket_timeout=None)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BENCH_REDIS_URL=self.server.url,
            BENCH_N=str(self.settings.n),
            BENCH_DRAIN_N=str(self.settings.drain_n),
            BENCH_LAT_N=str(self.settings.latency_n),
            BENCH_LAT_S=str(self.settings.latency_s),
            QTASKS_DISABLE_PLUGIN_AUTOLOAD="1",
        )
        env.update(extra)
        return env

    def env_for(self, framework: str, env: dict[str, str] | None) -> dict[str, str]:
        env = dict(env or self.env())
        if framework == "qtasks-base":
            env["PYTHONPATH"] = base_pythonpath()
        return env

    def producer(
        self, framework: str, command: str, variant: str = "", env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        env = self.env_for(framework, env)
        python, script = script_of(framework)
        argv = [python, script, command, "--url", self.server.url]
        if variant:
            argv += ["--variant", variant]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=900, env=env, check=False
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise RuntimeError((done.stderr or done.stdout).strip().splitlines()[-1:] or "failed")
        return dict(json.loads(lines[-1]))

    def start_worker(
        self, framework: str, variant: str = "", env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = self.env_for(framework, env)
        python, script = script_of(framework)
        argv = [python, script, "worker", "--url", self.server.url]
        if variant:
            argv += ["--variant", variant]
        log = open(CACHE / f"worker-{framework}.log", "wb")  # noqa: SIM115 - lives with the process
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    @staticmethod
    def stop_worker(proc: subprocess.Popen[bytes]) -> None:
        # The worker's own process group (it may have forked children: taskiq, Dramatiq).
        for sig, wait in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def with_worker(
        self,
        framework: str,
        command: str,
        variant: str = "",
        fill: bool = False,
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        self.admin.flushall()
        if fill:
            self.producer(framework, "fill", variant, env)
        worker = self.start_worker(framework, variant, env)
        try:
            env = {**self.env_for(framework, env), "BENCH_WORKER_PID": str(worker.pid)}
            return self.producer(framework, command, variant, env)
        finally:
            self.stop_worker(worker)

    def alone(self, framework: str, command: str, variant: str = "") -> dict[str, Any]:
        self.admin.flushall()
        return self.producer(framework, command, variant)

    def ceiling(self, command: str) -> dict[str, Any]:
        self.admin.flushall()
        done = subprocess.run(
            [sys.executable, str(HERE / "ceiling.py"), command, "--url", self.server.url],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.env(),
            check=True,
        )
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def memory(self) -> dict[str, Any]:
        """qtasks worker RSS at 10k and at rss_n finished tasks, and Redis bytes per finished
        record (used_memory before the fill and after the drain)."""
        n = self.settings.rss_n
        env = self.env(BENCH_DRAIN_N=str(n), BENCH_RSS_MARKS=f"10000,{n}")
        self.admin.flushall()
        before = int(self.admin.info("memory")["used_memory"])
        self.producer("qtasks", "fill", "", env)
        worker = self.start_worker("qtasks", "", env)
        try:
            drained = self.producer("qtasks", "drain", "", env)
            # The report fires in the N-th task body; its final write follows.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                self.admin.zcard("QueueTasks:lease") or self.admin.hlen("QueueTasks:msg")
            ):
                time.sleep(0.2)
        finally:
            self.stop_worker(worker)
        after = int(self.admin.info("memory")["used_memory"])
        rss = {
            int(x["n"]): int(x["rss"])
            for x in map(json.loads, self.admin.lrange("bench:rss", 0, -1))
        }
        return {
            "n": n,
            "rss_10k": rss.get(10_000),
            "rss_n": rss.get(n),
            "growth_mb": (rss[n] - rss[10_000]) / 2**20 if {10_000, n} <= rss.keys() else None,
            "redis_bytes_per_record": (after - before) / n,
            "drain_rate": drained["rate"],
        }


# -- the plan -----------------------------------------------------------------------------------


def plan(runner: Runner, peers: list[str]) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """One round: (result key, run) in the order they run; frameworks alternate."""
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    ours = ["qtasks", "qtasks-base"] if Base.src is not None else ["qtasks"]
    for command in ("async", "sync", "pipelined", "evalsha"):
        steps.append((f"ceiling/{command}", lambda c=command: runner.ceiling(c)))
    for fw in [*ours, *peers]:
        steps.append((f"e2e/{fw}", lambda fw=fw: runner.with_worker(fw, "e2e")))
    # Each variant beside a run without it; the Sentry SDK alone and with `SentryPlugin` back to
    # back, since the plugin is judged against the SDK alone (the table pairs them per round).
    for variants in (["sync"], ["otel"], ["sentry-sdk", "sentry"]):
        for variant in variants:
            steps.append(
                (f"e2e/qtasks-{variant}", lambda v=variant: runner.with_worker("qtasks", "e2e", v))
            )
        steps.append(("e2e/qtasks", lambda: runner.with_worker("qtasks", "e2e")))
    if Base.src is not None:
        steps.append(
            ("e2e/qtasks-base-sync", lambda: runner.with_worker("qtasks-base", "e2e", "sync"))
        )
    for fw in [*ours, *peers]:
        steps.append((f"enqueue/{fw}", lambda fw=fw: runner.alone(fw, "enqueue")))
    for fw in ours:
        steps.append((f"enqueue/{fw}-sync", lambda fw=fw: runner.alone(fw, "enqueue", "sync")))
    for fw in [*ours, *[p for p in peers if p == "rq"]]:
        steps.append((f"bulk/{fw}", lambda fw=fw: runner.alone(fw, "bulk")))
    for fw in [*ours, *peers]:
        steps.append((f"drain/{fw}", lambda fw=fw: runner.with_worker(fw, "drain", fill=True)))
    for fw in ours:
        steps.append(
            (f"drain/{fw}-sync", lambda fw=fw: runner.with_worker(fw, "drain", "sync", fill=True))
        )
    for fw in [*ours, *peers]:
        variant = "defaults" if fw == "arq" else ""
        steps.append(
            (f"latency/{fw}", lambda fw=fw, v=variant: runner.with_worker(fw, "latency", v))
        )
    return steps


# -- the table ----------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.2f}{unit}"


def mib(value: int | None) -> str:
    return fmt(None if value is None else value / 2**20, " MiB")


def cpu_total(res: Results, key: str) -> float | None:
    """Median CPU per task, in us, of producer, worker and Redis over the runs of `key`."""
    runs = [v["cpu_us"]["total"] for v in res.values.get(key, []) if v.get("cpu_us")]
    return statistics.median(runs) if runs else None


def change(new: float | None, old: float | None) -> str:
    return f"{100 * (new / old - 1):+.1f}%" if new and old else "-"


def plugin_rows(res: Results) -> list[str]:
    """End to end with each plugin: the rate, and the CPU per task of the three processes (the
    machine is CPU-bound end to end; a rate moves 10-30 % between runs here, CPU much less)."""
    base, base_cpu = res.median("e2e/qtasks"), cpu_total(res, "e2e/qtasks")
    out = [
        "| plugins (end to end) | tasks/s | vs without | CPU per task (producer + worker + "
        "Redis) | vs without |",
        "|---|---|---|---|---|",
        f"| none | {fmt(base)} | - | {fmt(base_cpu, ' us')} | - |",
    ]
    for variant in ("otel", "sentry-sdk", "sentry"):
        key = f"e2e/qtasks-{variant}"
        rate, cpu = res.median(key), cpu_total(res, key)
        out.append(
            f"| {variant} | {fmt(rate)} | {change(rate, base)} | {fmt(cpu, ' us')} | "
            f"{change(cpu, base_cpu)} |"
        )
    sdk_runs = [v["rate"] for v in res.values.get("e2e/qtasks-sentry-sdk", [])]
    plugin_runs = [v["rate"] for v in res.values.get("e2e/qtasks-sentry", [])]
    if sdk_runs and plugin_runs:
        sdk, plugin = statistics.median(sdk_runs), statistics.median(plugin_runs)
        # The two run back to back in each round: the ratio within a round is spared the
        # drift between rounds.
        paired = statistics.median(p / s for p, s in zip(plugin_runs, sdk_runs, strict=False))
        sdk_cpu, plugin_cpu = (
            cpu_total(res, "e2e/qtasks-sentry-sdk"),
            cpu_total(res, "e2e/qtasks-sentry"),
        )
        out.append(
            f"| SentryPlugin over sentry-sdk alone | | {change(plugin, sdk)} (back to back per "
            f"round: {100 * (paired - 1):+.1f}%) | | {change(plugin_cpu, sdk_cpu)} |"
        )
    return out


def table(res: Results, peers: list[str]) -> str:
    out: list[str] = []
    ceil_async = res.median("ceiling/async")
    rows = [
        ("bare redis-py, one awaited INCR at a time (async)", "ceiling/async"),
        ("bare redis-py, one INCR at a time (sync)", "ceiling/sync"),
        ("bare redis-py, pipelined INCR (100 per pipeline)", "ceiling/pipelined"),
        ("bare redis-py, one awaited EVALSHA at a time", "ceiling/evalsha"),
    ]
    out += ["| ceiling | commands/s |", "|---|---|"]
    out += [f"| {label} | {fmt(res.median(key))} |" for label, key in rows]
    out.append("")

    def cell(key: str, metric: str = "rate", unit: str = "") -> str:
        if key in res.errors and key not in res.values:
            return f"failed: {res.errors[key][:80]}"
        return fmt(res.median(key, metric), unit)

    def best_peer(kind: str, metric: str = "rate") -> tuple[str, float] | None:
        found = [(p, res.median(f"{kind}/{p}", metric)) for p in peers]
        found = [(p, v) for p, v in found if v is not None]
        return max(found, key=lambda pv: pv[1]) if found else None

    out += [
        "| scenario (median) | qtasks | "
        + " | ".join(peers)
        + " | qtasks / best peer | qtasks / ceiling |",
        "|---" * (len(peers) + 4) + "|",
    ]
    for label, kind in (
        ("end to end, tasks/s", "e2e"),
        ("enqueue, one awaited call each, tasks/s", "enqueue"),
        ("drain of a pre-filled queue, tasks/s", "drain"),
    ):
        q = res.median(f"{kind}/qtasks")
        best = best_peer(kind)
        ratio = f"{q / best[1]:.2f}x ({best[0]})" if q and best else "-"
        ceil = f"{100 * q / ceil_async:.0f}%" if q and ceil_async and kind != "drain" else "-"
        out.append(
            f"| {label} | {cell(kind + '/qtasks')} | "
            + " | ".join(cell(f"{kind}/{p}") for p in peers)
            + f" | {ratio} | {ceil} |"
        )
    q = res.median("bulk/qtasks")
    out.append(
        f"| bulk enqueue, tasks/s | {cell('bulk/qtasks')} | "
        + " | ".join(
            cell(f"bulk/{p}")
            if f"bulk/{p}" in res.values or f"bulk/{p}" in res.errors
            else "no bulk API"
            for p in peers
        )
        + " | - | - |"
    )
    for metric, label in (("median_ms", "round trip, median ms"), ("p99_ms", "round trip, p99 ms")):
        out.append(
            f"| {label} (default settings) | {cell('latency/qtasks', metric)} | "
            + " | ".join(cell(f"latency/{p}", metric) for p in peers)
            + " | - | - |"
        )
    out.append("")
    out += [
        "| sync app | qtasks (sync app, SyncThreadWorker) | Dramatiq (8 threads) | ratio |",
        "|---|---|---|---|",
    ]
    for label, kind in (
        ("end to end, tasks/s", "e2e"),
        ("enqueue, one call each (no worker), tasks/s", "enqueue"),
        ("drain, tasks/s", "drain"),
    ):
        qs, dq = res.median(f"{kind}/qtasks-sync"), res.median(f"{kind}/dramatiq")
        ratio = f"{qs / dq:.2f}x" if qs and dq else "-"
        out.append(f"| {label} | {fmt(qs)} | {cell(kind + '/dramatiq')} | {ratio} |")
    out.append("")
    out += plugin_rows(res)
    if any(k.endswith("/qtasks-base") for k in res.values):
        out += [
            "",
            "| qtasks before / after (median) | before (--base) | after | after / before |",
            "|---|---|---|---|",
        ]
        for label, key, metric, variant in (
            ("end to end, tasks/s", "e2e", "rate", ""),
            ("enqueue, tasks/s", "enqueue", "rate", ""),
            ("sync enqueue, tasks/s", "enqueue", "rate", "-sync"),
            ("bulk enqueue, tasks/s", "bulk", "rate", ""),
            ("drain, tasks/s", "drain", "rate", ""),
            ("round trip median, ms", "latency", "median_ms", ""),
            ("round trip p99, ms", "latency", "p99_ms", ""),
            ("sync end to end, tasks/s", "e2e", "rate", "-sync"),
            ("sync drain, tasks/s", "drain", "rate", "-sync"),
        ):
            old = res.median(f"{key}/qtasks-base{variant}", metric)
            new = res.median(f"{key}/qtasks{variant}", metric)
            ratio = f"{new / old:.2f}x" if old and new else "-"
            out.append(f"| {label} | {fmt(old)} | {fmt(new)} | {ratio} |")
        out.append("")
    mem = res.values.get("memory", [{}])[-1]
    per_record = mem.get("redis_bytes_per_record")
    if mem:
        out += [
            "",
            "| memory | value |",
            "|---|---|",
            f"| worker RSS after 10,000 tasks | {mib(mem.get('rss_10k'))} |",
            f"| worker RSS after {mem['n']:,} tasks | {mib(mem.get('rss_n'))} |",
            f"| growth | {fmt(mem.get('growth_mb'), ' MiB')} |",
            f"| Redis memory per finished record | {fmt(per_record, ' bytes')} |",
        ]
    elif "memory" in res.errors:
        out += ["", f"memory run failed: {res.errors['memory']}"]
    return "\n".join(out)


def versions(peers: list[str]) -> dict[str, str]:
    from importlib.metadata import version

    out = {
        "python": platform.python_version(),
        "qtasks-core": version("qtasks-core"),
        "redis-py": version("redis"),
    }
    binary = find_redis_server()
    if binary:
        out["redis-server"] = ".".join(map(str, server_version(binary)))
    for p in peers:
        out[p] = " ".join(PEERS[p])
    return out


def run_rounds(
    steps: list[tuple[str, Callable[[], dict[str, Any]]]],
    rounds: int,
    res: Results,
    peers: list[str],
) -> None:
    for rnd in range(rounds):
        for key, run in steps:
            fw = key.split("/", 1)[1]
            if fw in res.errors and fw in peers:
                continue
            done = res.values.get(key, [])
            if done and done[0].get("seconds", 0) > SLOW_DRAIN:
                continue  # a slow peer's drain runs once: keeps a full run near 20 minutes
            t0 = time.monotonic()
            try:
                value = run()
                res.add(key, value)
                note = json.dumps(
                    {k: round(v, 2) if isinstance(v, float) else v for k, v in value.items()}
                )
            except Exception as exc:  # noqa: BLE001 - a failing peer is reported, not fatal
                res.add(key, None, f"{type(exc).__name__}: {exc}")
                note = f"FAILED {type(exc).__name__}: {exc}"
            print(
                f"[round {rnd + 1}] {key:24} {time.monotonic() - t0:5.1f}s  {note}",
                file=sys.stderr,
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one short round (about 5 minutes)")
    ap.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    ap.add_argument("--peers", default=",".join(PEER_NAMES), help="comma-separated, or ''")
    ap.add_argument("--only", default="", help="run only result keys with this prefix, e.g. e2e/")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--base", type=Path, help="source tree of an older qtasks: before/after rows")
    args = ap.parse_args()
    Base.src = args.base
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings.rounds = args.rounds
    CACHE.mkdir(parents=True, exist_ok=True)
    res = Results()
    peers: list[str] = []
    for name in [p for p in args.peers.split(",") if p]:
        error = ensure_peer(name)
        if error:
            print(f"{name}: {error}", file=sys.stderr)
            for kind in ("e2e", "enqueue", "drain", "latency"):
                res.add(f"{kind}/{name}", None, error)
        peers.append(name)
    started = time.time()
    with RedisServer() as server:
        runner = Runner(server, settings, args.verbose)
        steps = [(k, run) for k, run in plan(runner, peers) if k.startswith(args.only)]
        run_rounds(steps, settings.rounds, res, peers)
        if not args.no_memory and not args.only:
            try:
                res.add("memory", runner.memory())
            except Exception as exc:  # noqa: BLE001
                res.add("memory", None, f"{type(exc).__name__}: {exc}")
    info = versions(peers)
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{settings.rounds} round(s), N={settings.n}, drain {settings.drain_n}; "
        + ", ".join(f"{k} {v}" for k, v in info.items())
    )
    text = header + "\n\n" + table(res, peers)
    print(text)
    out = CACHE / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {"header": header, "values": res.values, "errors": res.errors, "table": text}, indent=1
        )
    )
    print(f"\n(raw results: {out})", file=sys.stderr)


if __name__ == "__main__":
    main()
