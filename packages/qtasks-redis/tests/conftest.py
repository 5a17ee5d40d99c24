"""Fixtures of the qtasks-redis tests; helpers live in redis_test_support.py."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_test_support import Ledger, WorkerProcess


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes; any still running at the end is killed."""
    started: list[WorkerProcess] = []

    def start(url: str, ledger: Ledger, **kwargs: Any) -> WorkerProcess:
        proc = WorkerProcess(url, ledger, tmp_path / f"worker{len(started)}.log", **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.kill9()
