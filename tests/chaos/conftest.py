"""Fixtures of the chaos suite: Redis servers, worker processes, the ledger and the results file.

Every test here is marked `chaos`; the slow tier is also marked `chaos_slow` and skips unless
QTASKS_CHAOS_SLOW=1. Seeds: TQ_CHAOS_SEED=<n> replays a run (each test derives its own
`random.Random` from the seed and its name). Fixtures stop only processes they started.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_scenarios import SCENARIOS, scenario_of
from chaos_support import FAST, Faults, Ledger, Report, registered_pids, wait_for

from qtasks.testing import RedisServer
from qtasks.testing.pytest_plugin import redis_binary_or_skip

HERE = Path(__file__).resolve().parent
RESULTS_DIR = Path(os.environ.get("QTASKS_CHAOS_RESULTS", HERE / ".results"))
SLOW_ENV = "QTASKS_CHAOS_SLOW"
SEED = int(os.environ.get("TQ_CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def slow_enabled() -> bool:
    return os.environ.get(SLOW_ENV, "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    # Also in the root pyproject; registered here for runs with another rootdir.
    known = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    if "chaos_slow" not in known:
        config.addinivalue_line("markers", "chaos_slow: chaos slow tier (QTASKS_CHAOS_SLOW=1)")


def pytest_report_header() -> str:
    return f"chaos seed: TQ_CHAOS_SEED={SEED} (slow tier {'on' if slow_enabled() else 'off'})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.chaos)
        if item.get_closest_marker("chaos_slow") and not slow_enabled():
            item.add_marker(pytest.mark.skip(reason=f"slow tier: set {SLOW_ENV}=1"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


# -- seeds ------------------------------------------------------------------------------------


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(f"{SEED}:{request.node.name}")


# -- redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers for this test (`appendonly=`, `password=`, `extra_args=`)."""
    started: list[RedisServer] = []

    def start(**kwargs: Any) -> RedisServer:
        directory = tmp_path / f"redis{len(started)}"
        server = RedisServer(binary=redis_binary_or_skip(), dir=directory, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.fixture
def server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A plain server (no persistence) for this test."""
    return redis_factory()


# -- workers ----------------------------------------------------------------------------------


class Worker:
    """`python -m qtasks -A chaos_app:build run` in its own process group."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=HERE,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        # Only while our child lives: a reaped pid (and its group id) may be reused.
        if self.proc.poll() is None:
            os.killpg(self.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Workers:
    def __init__(self, tmp: Path, ledger: Ledger) -> None:
        self.tmp = tmp
        self.ledger = ledger
        self.started: list[Worker] = []

    def start(
        self,
        url: str,
        flavour: str = "sync",
        *,
        name: str = "tq",
        crash_at: str | None = None,
        crash_key: str | None = None,
        log_level: str = "info",
        extra_env: dict[str, str] | None = None,
        command: list[str] | None = None,
        **config: Any,
    ) -> Worker:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("QTASKS_", "TQ_", "CHAOS_")) or k == "QTASKS_REQUIRE_REDIS"
        }
        env.update(
            QTASKS_BROKER_URL=url,
            CHAOS_FLAVOUR=flavour,
            CHAOS_NAME=name,
            CHAOS_LEDGER=str(self.ledger.path),
            PYTHONUNBUFFERED="1",
            PYTHONFAULTHANDLER="1",
        )
        for key, value in {**FAST, **config}.items():
            env[f"QTASKS_{key.upper()}"] = str(value)
        if crash_at:
            env["TQ_CRASH_AT"] = crash_at
            env["TQ_CRASH_KEY"] = crash_key or ""
        env.update(extra_env or {})
        argv = [sys.executable, *(command or ["-m", "qtasks", "-A", "chaos_app:build", "run"])]
        if command is None:
            argv += ["--log-level", log_level]
        worker = Worker(argv, env, self.tmp / f"worker{len(self.started)}.log")
        self.started.append(worker)
        return worker

    def ready(self, app: Any, *workers: Worker, timeout: float = 30) -> None:
        """Wait until each worker is in the live-worker registry (it consumes)."""
        wanted = {w.pid for w in workers}

        def up() -> bool:
            for worker in workers:
                if not worker.alive():
                    raise AssertionError(f"worker {worker.pid} exited:\n{worker.log()[-3000:]}")
            return wanted <= registered_pids(app)

        wait_for(up, timeout, f"workers {sorted(wanted)} to consume")

    def stop_all(self, timeout: float = 15) -> dict[int, int]:
        """SIGTERM every live worker at once (a graceful drain); their exit codes."""
        live = [w for w in self.started if w.alive()]
        # A worker still importing has no SIGTERM handler yet and would die of the signal
        # (-15): let each one reach its consume loop first (it logs "consuming").
        wait_for(
            lambda: all("consuming" in w.log() or not w.alive() for w in live),
            30,
            "every worker to be consuming before the drain",
        )
        for worker in live:
            worker.terminate()
        deadline = time.monotonic() + timeout
        codes = {}
        for worker in live:
            try:
                codes[worker.pid] = worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # A hung drain: faulthandler (PYTHONFAULTHANDLER) writes every thread's stack
                # to the worker's log on SIGABRT, so the failure shows where it hangs.
                worker.signal(signal.SIGUSR2)  # chaos_app: the asyncio tasks' stacks
                time.sleep(0.5)  # a failure path only: let the handler write
                worker.signal(signal.SIGABRT)
                worker.proc.wait(5)
                raise AssertionError(
                    f"worker {worker.pid} did not drain within {timeout}s:\n{worker.log()[-20000:]}"
                ) from None
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.pid}\n{w.log()[-4000:]}" for w in self.started)

    def cleanup(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.signal(signal.SIGCONT)  # a SIGSTOPped one would ignore nothing else
                worker.kill9()


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def workers(tmp_path: Path, ledger: Ledger, request: pytest.FixtureRequest) -> Iterator[Workers]:
    pool = Workers(tmp_path, ledger)
    yield pool
    reports = request.node.stash.get(_REPORTS, {})
    if any(r.failed for r in reports.values()):
        print(pool.logs())  # shown with the failure
    pool.cleanup()


# -- results ----------------------------------------------------------------------------------


class ChaosResult:
    """The figures of one scenario run, written to RESULTS_DIR/<test>.json at teardown."""

    def __init__(self, test: str, tier: str) -> None:
        self.test = test
        self.scenario = scenario_of(test) or "?"
        self.tier = tier
        name, injects = SCENARIOS.get(self.scenario, (test, ""))
        self.data: dict[str, Any] = {
            "scenario": self.scenario,
            "name": name,
            "test": test,
            "tier": tier,
            "injects": injects,
            "tasks": 0,
            "faults": 0,
            "lost": 0,
            "dup_records": 0,
            "dup_exec": 0,
            "dup_exec_explained": 0,
            "seed": SEED,
            "notes": [],
        }
        self.started = time.monotonic()

    def set(self, **figures: Any) -> None:
        self.data.update(figures)

    def note(self, text: str) -> None:
        self.data["notes"].append(text)

    def checked(self, report: Report, faults: Faults | None = None) -> None:
        figures = report.figures()
        figures.pop("unexpected")
        self.data.update(figures)
        if faults is not None:
            self.data["faults"] = faults.count


@pytest.fixture
def chaos_result(request: pytest.FixtureRequest) -> Iterator[ChaosResult]:
    node = request.node
    tier = "slow" if node.get_closest_marker("chaos_slow") else "fast"
    result = ChaosResult(node.name, tier)
    yield result
    reports = node.stash.get(_REPORTS, {})
    outcome, reason = "pass", ""
    for when in ("setup", "call"):
        rep = reports.get(when)
        if rep is None:
            continue
        if rep.failed:
            text = rep.longreprtext
            lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
            outcome, reason = "fail", (lines[0] if lines else text.splitlines()[-1])[:300]
            break
        if rep.skipped:
            outcome = "skipped"
            longrepr = rep.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            break
    path = RESULTS_DIR / f"{node.name}.json"
    if outcome == "skipped" and tier == "slow" and path.exists():
        return  # a skipped slow test keeps the figures of its last real run
    result.set(
        result=outcome,
        reason=reason.removeprefix("Skipped: "),
        when=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - result.started, 1),
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.data, indent=1, sort_keys=True, default=str) + "\n")
