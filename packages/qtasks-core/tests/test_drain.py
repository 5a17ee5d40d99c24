"""SIGTERM drains a worker process; a second signal stops it at once. Both app flavours."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent / "drain_app.py"


def start(
    kind: str, ledger: Path, seconds: float, count: int, grace: float
) -> subprocess.Popen[str]:
    env = {**os.environ, "GRACE": str(grace)}
    return subprocess.Popen(
        [sys.executable, str(APP), kind, str(ledger), str(seconds), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def wait_for_starts(ledger: Path, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ledger.exists() and ledger.read_text().count("start ") >= count:
            return
        time.sleep(0.01)
    raise AssertionError("tasks did not start")


def read_ledger(ledger: Path) -> tuple[dict[str, float], dict[str, float]]:
    starts, ends = {}, {}
    for line in ledger.read_text().splitlines():
        kind, task, stamp = line.split()
        (starts if kind == "start" else ends)[task] = float(stamp)
    return starts, ends


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sigterm_drains(kind: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    proc = start(kind, ledger, seconds=0.4, count=10, grace=5)
    try:
        wait_for_starts(ledger, 2)
        signalled = time.time()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    statuses = json.loads(out.strip().splitlines()[-1])
    starts, ends = read_ledger(ledger)
    assert set(starts) == set(ends), "a running task was not allowed to finish"
    assert all(stamp <= signalled + 0.1 for stamp in starts.values()), "started after SIGTERM"
    assert {statuses[t] for t in starts} == {"success"}
    assert {statuses[t] for t in statuses if t not in starts} == {"new"}  # handed back, queued


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_second_signal_stops_at_once(kind: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    proc = start(kind, ledger, seconds=30, count=4, grace=60)
    try:
        wait_for_starts(ledger, 2)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # let the first signal begin the drain
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - began < 5
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    statuses = json.loads(out.strip().splitlines()[-1])
    assert set(statuses.values()) == {"new"}  # the interrupted tasks went back to the queue
