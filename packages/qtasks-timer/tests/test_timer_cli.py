"""A timer as a service: `qtasks -A module:app timer`, or `python -m qtasks.timer TARGET`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCHEDULES = """
from apscheduler.triggers.interval import IntervalTrigger

from qtasks import QueueTasks
from qtasks.plugins import BasePlugin
from qtasks.timer import SyncTimer

app = QueueTasks(name="cli", broker_url="memory://")


@app.task(name="beat")
def beat():
    return None


ledger = BasePlugin()
ledger.handlers = {"timer_add_task_after": lambda task, **kw: print("ENQ", task.uuid, flush=True)}
app.add_plugin(ledger, component="timer")
timer = SyncTimer(app)
timer.add_task("beat", trigger=IntervalTrigger(seconds=0.2))
"""


COMMANDS = {
    "module timer": ["-m", "qtasks.timer", "schedules:timer"],
    "module app": ["-m", "qtasks.timer", "schedules:app"],
    "qtasks -A app timer": ["-m", "qtasks", "-A", "schedules:app", "timer"],
    "qtasks timer --timer": ["-m", "qtasks", "timer", "--timer", "schedules:timer"],
}


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_a_timer_runs_as_a_service_until_sigterm(tmp_path: Path, how: str) -> None:
    (tmp_path / "schedules.py").write_text(SCHEDULES)
    proc = subprocess.Popen(
        [sys.executable, *COMMANDS[how]],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the first enqueue (or the process dies)
        assert line.startswith("ENQ "), proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("how", ["module", "qtasks"])
def test_an_app_without_a_timer_is_a_clear_error(tmp_path: Path, how: str) -> None:
    (tmp_path / "empty.py").write_text(
        "from qtasks import QueueTasks\napp = QueueTasks(broker_url='memory://')\n"
    )
    argv = (
        ["-m", "qtasks.timer", "empty:app"]
        if how == "module"
        else ["-m", "qtasks", "-A", "empty:app", "timer"]
    )
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 3
    assert "exactly one timer" in done.stderr
