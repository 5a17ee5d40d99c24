"""The seed's Redis examples (shared/seeds/components.md) run as written against redis-server.

Each example is copied verbatim in seed_examples/*.py.txt. The test writes it out with
`redis://localhost:6379` pointed at the test server (`QTASKS_BROKER_URL` covers the examples that
use the default URL), runs it in a subprocess and checks that a task completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis_test_support import registered_pids, sync_app, wait_for

SEEDS = Path(__file__).resolve().parent / "seed_examples"

SYNC_HARNESS = """
# -- test harness: one task through the example's app --
with app:
    task = app.add_task("test", 3, timeout=15)
    print("RESULT", task.status, task.returning)
"""

ASYNC_HARNESS = """
# -- test harness: one task through the example's app --
import asyncio as _asyncio


@app.task(name="probe")
async def _probe(x: int) -> int:
    return 2 * x


async def _main() -> None:
    async with app:
        task = await app.add_task("probe", 21, timeout=15)
        print("RESULT", task.status, task.returning)
        print("STORAGE", type(app.broker.storage).__name__,
              type(app.broker.storage.global_config).__name__)
        print("CHECK", {check})


_asyncio.run(_main())
"""


def write_seed(name: str, redis_url: str, tmp_path: Path, harness: str = "") -> Path:
    host_port = redis_url.split("//", 1)[1].rsplit("/", 1)[0]
    code = (SEEDS / f"{name}.py.txt").read_text()
    assert "redis://localhost:6379" in code or "QueueTasks()" in code
    code = code.replace("redis://localhost:6379", f"redis://{host_port}")
    path = tmp_path / f"{name}.py"
    path.write_text(code + harness)
    return path


def run(path: Path, redis_url: str) -> str:
    env = {**os.environ, "QTASKS_BROKER_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_queuetasks_example(redis_url: str, tmp_path: Path) -> None:
    out = run(write_seed("queuetasks_basic", redis_url, tmp_path, SYNC_HARNESS), redis_url)
    assert "RESULT success User 3 recorded" in out


def test_plugin_example(redis_url: str, tmp_path: Path) -> None:
    harness = (
        '\n@app.task(name="test")\ndef _test(id: int) -> str:\n    return f"seen {id}"\n'
        + SYNC_HARNESS
    )
    out = run(write_seed("plugin", redis_url, tmp_path, harness), redis_url)
    assert "RESULT success seen 3" in out and "ARGS:" in out


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("broker", "type(app.broker).__name__ == 'AsyncRedisBroker'"),
        ("worker", "app.worker is worker"),
        ("storage", "app.broker.storage is storage"),
        ("global_config", "app.broker.storage.global_config is config"),
    ],
)
def test_component_examples(name: str, check: str, redis_url: str, tmp_path: Path) -> None:
    harness = ASYNC_HARNESS.replace("{check}", check)
    out = run(write_seed(name, redis_url, tmp_path, harness), redis_url)
    assert "RESULT success 42" in out
    assert "STORAGE AsyncRedisStorage AsyncRedisGlobalConfig" in out
    assert "CHECK True" in out


def serve(path: Path, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "QTASKS_BROKER_URL": redis_url}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(path)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("name", "db", "task"),
    [
        ("complete", 2, ("test", 1, "User 1 recorded")),
        ("starter", 0, None),
    ],
)
def test_examples_that_serve(name: str, db: int, task: Any, redis_url: str, tmp_path: Path) -> None:
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    proc = serve(write_seed(name, redis_url, tmp_path), redis_url, tmp_path / "serve.log")
    try:
        producer = sync_app(url, enqueue_unknown_tasks=True)
        wait_for(
            lambda: proc.pid in registered_pids(producer) or proc.poll() is not None,
            30,
            "the example's worker to start",
        )
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        assert producer.ping() is True  # its running-status heartbeat
        if task is not None:
            name_, arg, expected = task
            record = producer.add_task(name_, arg, timeout=20)
            assert record is not None and record.status == "success"
            assert record.returning == expected
        else:  # the Starter example registers no task: an unknown name is dead-lettered
            record = producer.add_task("nope", timeout=20)
            assert record is not None and record.status == "error"
            assert [d.reason for d in producer.broker.list_dead()] == ["unknown_task"]
    finally:
        code = stop(proc)
    assert code == 0, (tmp_path / "serve.log").read_text()
