"""The seed's examples that need no server run as written, on the in-memory components."""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SEEDS = Path(__file__).resolve().parent / "seed_examples"


@pytest.fixture
def memory_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # `QueueTasks()` picks QTASKS_BROKER_URL before its Redis default.
    monkeypatch.setenv("QTASKS_BROKER_URL", "memory://")


def run_seed(name: str) -> dict[str, Any]:
    return runpy.run_path(str(SEEDS / name), run_name="seed")


@pytest.mark.usefixtures("memory_default")
def test_queuetasks_example() -> None:
    app = run_seed("queuetasks_basic.py")["app"]
    assert type(app.broker).__name__ == "SyncMemoryBroker"
    with app:
        task = app.add_task("test", 7, timeout=5)
    assert task is not None and task.returning == "User 7 recorded"


def test_plugin_example_handler_sees_args(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QTASKS_BROKER_URL", "memory://")
    app = run_seed("plugin.py")["app"]

    @app.task(name="greet")
    def greet(who: str) -> str:
        return f"hi {who}"

    with app:
        app.add_task("greet", "seed", timeout=5)
    out = capsys.readouterr().out
    assert "ARGS:" in out and "'args': ['seed']" in out


def test_starter_example_runs_and_drains_on_sigterm() -> None:
    env = {**os.environ, "QTASKS_BROKER_URL": "memory://"}
    code = (
        "import logging, runpy; logging.basicConfig(level=logging.INFO); "
        f"runpy.run_path({str(SEEDS / 'starter.py')!r}, run_name='__main__')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the start-up line, not a fixed time
            if "consuming" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
