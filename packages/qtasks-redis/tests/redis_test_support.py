"""Helpers for the qtasks-redis tests (the redis-server fixtures come from qtasks.testing).

Imported by name: conftest.py puts this directory on sys.path (pytest runs with
--import-mode=importlib, which does not), and the unique module name cannot clash with another
package's test helpers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qtasks.redis._wire import QUICK

# With a redis-py older than the quick paths know (`_wire.QUICK`), the clients use redis-py's own
# pools and connections: every guarantee must hold all the same, and what only the quick paths
# have is skipped.
quick_only = pytest.mark.skipif(not QUICK, reason="the quick paths need redis-py >= 8.1")

HERE = Path(__file__).resolve().parent
WORKER_APP = HERE / "redis_worker_app.py"


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Wait until `predicate()` is truthy (an event we observe), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sync_app(url: str, name: str = "QueueTasks", **config: Any) -> Any:
    from qtasks import QueueTasks
    from qtasks.configs.config import QueueConfig

    return QueueTasks(name=name, broker_url=url, config=QueueConfig(**config))


def async_app(url: str, name: str = "QueueTasks", **config: Any) -> Any:
    from qtasks.asyncio import QueueTasks
    from qtasks.configs.config import QueueConfig

    return QueueTasks(name=name, broker_url=url, config=QueueConfig(**config))


class Ledger:
    """The append-only file the worker processes' task bodies write ("start|end key pid")."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self) -> list[tuple[str, str, int]]:
        out = []
        for line in self.path.read_text().splitlines():
            event, key, pid = line.split()
            out.append((event, key, int(pid)))
        return out

    def count(self, event: str) -> int:
        return sum(1 for e, _, _ in self.lines() if e == event)

    def starts(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for event, key, pid in self.lines():
            if event == "start":
                out.setdefault(key, []).append(pid)
        return out

    def ends(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for event, key, pid in self.lines():
            if event == "end":
                out.setdefault(key, []).append(pid)
        return out


class WorkerProcess:
    """`redis_worker_app.py` in its own process group, configured by environment."""

    def __init__(
        self, url: str, ledger: Ledger, log: Path, flavour: str = "sync", **config: Any
    ) -> None:
        env = {**os.environ, "QT_URL": url, "QT_LEDGER": str(ledger.path), "QT_FLAVOUR": flavour}
        env.pop("QTASKS_BROKER_URL", None)
        for key, value in config.items():
            env[f"QTASKS_{key.upper()}"] = str(value)
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER_APP)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def registered_pids(app: Any) -> set[int]:
    """Pids in the live-worker registry (the workers write it once they consume)."""
    registry = app.broker.storage.global_config
    return {int(info["pid"]) for info in registry.get_all("workers").values()}
