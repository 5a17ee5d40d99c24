"""`python -m qtasks.timer module:timer` (or `module:app`) runs a timer as a service."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCHEDULES = '''
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
'''


@pytest.mark.parametrize("target", ["schedules:timer", "schedules:app"])
def test_the_module_runs_a_timer_until_sigterm(tmp_path: Path, target: str) -> None:
    (tmp_path / "schedules.py").write_text(SCHEDULES)
    proc = subprocess.Popen([sys.executable, "-m", "qtasks.timer", target], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the first enqueue (or the process dies)
        assert line.startswith("ENQ "), proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_a_target_without_a_timer_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("from qtasks import QueueTasks\napp = QueueTasks(broker_url=\"memory://\")\n")
    done = subprocess.run([sys.executable, "-m", "qtasks.timer", "empty:app"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "exactly one timer" in done.stderr
