"""Two timer processes on one Redis: every tick enqueues once, and ticks go on after a SIGKILL.

Each replica is a real process with its own scheduler; they share only Redis. Ticks are claimed
through the GlobalConfig's `set_nx` (Redis `SET NX PX`). The first variant gives the replicas a
minimal GlobalConfig over RESP (so it runs with core + timer alone); the second uses qtasks-redis
for broker, storage and GlobalConfig, and counts the task records per tick in Redis.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from qtasks import _discovery
from qtasks.testing import RedisServer

REPLICA = r'''
import json
import sys

from apscheduler.triggers.cron import CronTrigger

from qtasks import QueueTasks
from qtasks.configs.base import SyncGlobalConfig
from qtasks.plugins import BasePlugin
from qtasks.testing import command
from qtasks.timer import AsyncTimer, SyncTimer


class RespGlobalConfig(SyncGlobalConfig):
    """The GlobalConfig contract on Redis, one key per (name, key): SET NX PX for claims."""

    def __init__(self, port, name):
        self.port = port
        super().__init__(name=name)

    def _key(self, name, key):
        return f"{self.name}:gc:{name}:{key}"

    def _set(self, name, key, value, ttl, only_new):
        args = ["SET", self._key(name, key), json.dumps(value)]
        if only_new:
            args.append("NX")
        if ttl is not None:
            args += ["PX", max(1, int(ttl * 1000))]
        return command(self.port, *args) == b"OK"

    def _get_all(self, name):
        prefix = self._key(name, "")
        out = {}
        for key in command(self.port, "KEYS", prefix + "*") or []:
            value = command(self.port, "GET", key)
            if value is not None:
                out[key.decode()[len(prefix):]] = json.loads(value)
        return out

    def _delete(self, name, key):
        command(self.port, "DEL", self._key(name, key))


flavour, backend, url, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if backend == "qtasks-redis":
    app = QueueTasks(name="replicas", broker_url=url)
else:
    app = QueueTasks(name="replicas", broker_url="memory://")
    app.broker.storage.global_config = RespGlobalConfig(port, "replicas")


@app.task(name="tick")
def tick():
    return None


ledger = BasePlugin()
ledger.handlers = {
    "timer_start": lambda **kw: print("READY", flush=True),
    "timer_add_task_after": lambda run_time, **kw: print("ENQ", run_time.isoformat(),
                                                          flush=True),
}
app.add_plugin(ledger, component="timer")
timer = (AsyncTimer if flavour == "async" else SyncTimer)(app)
timer.add_task("tick", trigger=CronTrigger(second="*", timezone="UTC"))
timer.run_forever()
print("STOPPED", flush=True)
'''


class Replicas:
    """Replica processes and the lines they print, read by threads (tests wait on lines)."""

    def __init__(self, script: Path, backend: str, server: RedisServer) -> None:
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.readers: list[threading.Thread] = []
        self.ready: set[str] = set()
        self.enqueued: list[tuple[datetime, str]] = []
        for flavour in ("async", "sync"):
            proc = subprocess.Popen(
                [sys.executable, str(script), flavour, backend, server.url, str(server.port)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            self.procs[flavour] = proc
            reader = threading.Thread(target=self._read, args=(flavour, proc), daemon=True)
            reader.start()
            self.readers.append(reader)

    def _read(self, name: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put((name, line.strip()))

    def pump(self, done: Any, timeout: float) -> None:
        """Take lines until `done()` holds; fail after `timeout` seconds without it."""
        deadline = datetime.now() + timedelta(seconds=timeout)
        while not done():
            remaining = (deadline - datetime.now()).total_seconds()
            try:
                name, line = self.lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                pytest.fail(f"timed out; ready={self.ready} enqueued={self.enqueued}")
            if line == "READY":
                self.ready.add(name)
            elif line.startswith("ENQ "):
                self.enqueued.append((datetime.fromisoformat(line[4:]), name))

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)


def run_and_kill_one(tmp_path: Path, backend: str, server: RedisServer) -> Replicas:
    script = tmp_path / "replica.py"
    script.write_text(REPLICA)
    replicas = Replicas(script, backend, server)
    try:
        replicas.pump(lambda: len(replicas.ready) == 2, timeout=15)
        replicas.pump(lambda: len(replicas.enqueued) >= 2, timeout=5)
        # Kill the replica that enqueued the latest tick: the other must take over.
        victim = replicas.enqueued[-1][1]
        replicas.procs[victim].kill()
        replicas.procs[victim].wait(5)
        before_kill = len(replicas.enqueued)
        replicas.pump(lambda: len(replicas.enqueued) >= before_kill + 2, timeout=5)
        survivor = next(name for name in replicas.procs if name != victim)
        replicas.procs[survivor].send_signal(signal.SIGTERM)
        assert replicas.procs[survivor].wait(10) == 0
        for reader in replicas.readers:
            reader.join(5)
        replicas.pump(replicas.lines.empty, timeout=1)
    finally:
        replicas.close()
    ticks = Counter(tick for tick, _ in replicas.enqueued)
    assert max(ticks.values()) == 1, f"a tick enqueued twice: {ticks}"
    ordered = sorted(ticks)
    gaps = {b - a for a, b in pairwise(ordered)}
    assert gaps == {timedelta(seconds=1)}, f"a tick was skipped: {ordered}"
    after_kill = [name for _, name in replicas.enqueued[before_kill:]]
    assert after_kill and set(after_kill) == {survivor}
    return replicas


@pytest.mark.chaos
def test_two_timers_enqueue_each_tick_once_and_survive_a_kill(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    replicas = run_and_kill_one(tmp_path, "resp", redis_server)
    # Each enqueue won a claim that Redis still holds (TTL well past the test).
    claims = redis_server.command("KEYS", "replicas:gc:timer_ticks:*")
    assert isinstance(claims, list) and len(claims) >= len(replicas.enqueued)


def has_redis_backend() -> bool:
    return _discovery.has_scheme("qtasks.brokers", "redis")


@pytest.mark.chaos
@pytest.mark.skipif(not has_redis_backend(), reason="qtasks-redis (redis:// broker) not installed")
def test_with_qtasks_redis_each_tick_is_one_task_record(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from qtasks import QueueTasks

    replicas = run_and_kill_one(tmp_path, "qtasks-redis", redis_server)
    app = QueueTasks(name="replicas", broker_url=redis_server.url)
    records = [task for task in app.broker.storage.get_all() if task.task_name == "tick"]
    per_tick = Counter(task.extra["timer_tick"] for task in records)
    assert max(per_tick.values()) == 1
    assert sorted(per_tick) == sorted(tick.isoformat() for tick, _ in replicas.enqueued)
