"""The Timer example of the seed (docs "Components") runs as written, with a faster trigger.

The seed builds `QueueTasks()` (sync), an `AsyncTimer` from the `qtasks.timers` facade, passes
the task name positionally, and calls `timer.run_forever()` at module level.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from qtasks import _discovery
from qtasks.plugins import BasePlugin
from qtasks.testing import RedisServer
from qtasks.timer import AsyncTimer

SEED = """
from qtasks import QueueTasks
from qtasks.timers import AsyncTimer
from apscheduler.triggers.cron import CronTrigger

app = QueueTasks()

@app.task
def test():
    print("Running test task")


trigger = CronTrigger(second="*/10")
timer = AsyncTimer(app=app)
timer.add_task("test", trigger=trigger)

timer.run_forever()
"""
# The one change: a tick every second instead of every ten.
FAST_SEED = SEED.replace('CronTrigger(second="*/10")', 'CronTrigger(second="*")')
assert FAST_SEED != SEED


def test_the_seed_runs_in_process_and_its_task_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    # `QueueTasks()` takes its broker from the environment; a fresh in-memory store here.
    monkeypatch.setenv("QTASKS_BROKER_URL", store_url)
    started = threading.Event()
    original_start = AsyncTimer.start

    async def start(self: AsyncTimer) -> None:
        await original_start(self)
        started.set()

    monkeypatch.setattr(AsyncTimer, "start", start)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    failures: list[BaseException] = []

    def run_seed() -> None:
        try:
            exec(compile(FAST_SEED, "seed_timer.py", "exec"), namespace)

        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    runner = threading.Thread(target=run_seed, daemon=True)
    runner.start()
    assert started.wait(5), failures
    app = namespace["app"]
    ran = threading.Event()
    done = BasePlugin()
    done.handlers = {"worker_task_success": lambda **kw: ran.set()}
    app.add_plugin(done, component="worker")
    app.start()  # the seed's own worker, so the seed's own task runs
    try:
        assert ran.wait(5)
    finally:
        namespace["timer"].request_stop()
        runner.join(5)
        app.stop()
    assert not runner.is_alive() and not failures
    assert "Running test task" in capsys.readouterr().out


@pytest.mark.skipif(
    not _discovery.has_scheme("qtasks.brokers", "redis"),
    reason="qtasks-redis (redis:// broker) not installed",
)
def test_the_seed_runs_as_its_own_process_on_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from qtasks import QueueTasks

    seed = tmp_path / "seed_timer.py"
    seed.write_text(FAST_SEED)
    env = {**os.environ, "QTASKS_BROKER_URL": redis_server.url}
    worker = QueueTasks(broker_url=redis_server.url)
    ran = threading.Event()

    @worker.task(name="test")
    def test() -> None:
        ran.set()

    proc = subprocess.Popen(
        [sys.executable, str(seed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with worker:
            assert ran.wait(6), "no tick of the seed's timer reached the worker"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops the seed's timer cleanly
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    records = [t for t in worker.broker.storage.get_all() if t.task_name == "test"]
    assert records and all("timer_tick" in t.extra for t in records)
