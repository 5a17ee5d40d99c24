"""The `qtasks` command line, run as a subprocess against a real Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

APP = """
import os
from qtasks import QueueTasks

app = QueueTasks(name="clitest", broker_url=os.environ["CLI_REDIS_URL"])
app.config.enqueue_unknown_tasks = True
app.config.heartbeat_interval = 0.2

@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b

@app.task(name="slow")
def slow(seconds: float) -> str:
    import time
    time.sleep(seconds)
    return "slept"

if os.environ.get("CLI_DEPLOY_GHOST"):  # the fix that makes the poisoned task runnable
    @app.task(name="ghost")
    def ghost() -> str:
        return "haunted"
"""


class Cli:
    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.workers: list[subprocess.Popen[str]] = []

    def __call__(
        self, *args: str, extra_env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qtasks", "-A", "cliapp:app", *args],
            cwd=self.cwd,
            env={**self.env, **(extra_env or {})},
            text=True,
            capture_output=True,
            timeout=30,
            input=stdin,
        )

    def start_worker(self, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qtasks", "-A", "cliapp:app", "run", "--concurrency", "4"],
            cwd=self.cwd,
            env={**self.env, **(extra_env or {})},
            text=True,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stderr is not None
        for line in proc.stderr:  # the start-up log line, not a fixed sleep
            if "consuming" in line:
                break
        self.workers.append(proc)
        return proc

    def stop_worker(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


@pytest.fixture
def cli(tmp_path: Path, redis_url: str) -> Iterator[Cli]:
    (tmp_path / "cliapp.py").write_text(textwrap.dedent(APP))
    env = {**os.environ, "CLI_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    runner = Cli(tmp_path, env)
    yield runner
    for proc in runner.workers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def stats(cli: Cli) -> dict[str, Any]:
    out = cli("stats", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_worker_add_wait_stats_and_cancel(cli: Cli) -> None:
    worker = cli.start_worker()
    done = cli("add", "add", "2", "3", "--wait", "10", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "success" and record["returning"] == 5

    figures = stats(cli)
    assert figures["statuses"]["success"] == 1
    assert [w["pid"] for w in figures["workers"]] == [worker.pid]
    assert figures["throughput_last_minute"] >= 1

    queued = cli("add", "slow", "5", "--delay", "60")  # held back: cancel it while queued
    uuid = queued.stdout.strip()
    cancelled = cli("cancel", uuid, "--reason", "not today")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    status = cli("status", uuid, "--json")
    record = json.loads(status.stdout)
    assert record["status"] == "cancel" and record["cancel_reason"] == "not today"
    # Numbers as numbers, times as epoch seconds (they were the storage's strings).
    assert record["priority"] == 0 and record["attempt"] == 0 and record["args"] == [5]
    assert isinstance(record["created_at"], float) and isinstance(record["eta"], float)
    cli.stop_worker(worker)


def test_poisoned_task_leaves_the_dead_letter_set_with_retry(cli: Cli) -> None:
    worker = cli.start_worker()
    added = cli("add", "ghost", "--wait", "10", "--json")  # no worker knows it: dead-lettered
    assert added.returncode == 1
    uuid = json.loads(added.stdout)["uuid"]
    listed = cli("dead", "list", "--json")
    assert [(e["uuid"], e["reason"]) for e in json.loads(listed.stdout)] == [(uuid, "unknown_task")]
    cli.stop_worker(worker)

    fixed = cli.start_worker(extra_env={"CLI_DEPLOY_GHOST": "1"})
    retried = cli("retry", uuid)
    assert retried.returncode == 0, retried.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = json.loads(cli("status", uuid, "--json").stdout)
        if status["status"] == "success":
            break
    assert status["status"] == "success" and status["returning"] == "haunted"
    assert json.loads(cli("dead", "list", "--json").stdout) == []
    cli.stop_worker(fixed)


def test_errors_are_one_line_with_documented_codes(cli: Cli, tmp_path: Path) -> None:
    def stats_of(app_path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qtasks", "-A", app_path, "stats"],
            cwd=tmp_path,
            text=True,
            capture_output=True,
            timeout=30,
        )

    no_loops = subprocess.run(
        [sys.executable, "-m", "qtasks", "-A", "nowhere:app", "run", "-l", "0"],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=30,
    )
    assert no_loops.returncode == 2 and "at least 1" in no_loops.stderr  # was run with 1
    missing = stats_of("nowhere:app")
    assert missing.returncode == 3
    assert missing.stderr.strip().count("\n") == 0 and "nowhere" in missing.stderr
    # A module that fails while it is imported is "could not be loaded" too (it was a
    # traceback and exit 1).
    (tmp_path / "broken.py").write_text("app = {}['missing']\n")
    broken = stats_of("broken:app")
    assert broken.returncode == 3 and "KeyError" in broken.stderr
    assert broken.stderr.strip().count("\n") == 0
    no_attr = cli("stats", extra_env={})
    assert no_attr.returncode == 0
    wrong = subprocess.run(
        [sys.executable, "-m", "qtasks", "-A", "cliapp:nope", "stats"],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=30,
        env=cli.env,
    )
    assert wrong.returncode == 3 and "has no attribute 'nope'" in wrong.stderr
    down = cli("stats", extra_env={"CLI_REDIS_URL": "redis://:s3cret-canary@127.0.0.1:1/0"})
    assert down.returncode == 4
    assert "redis://:***@127.0.0.1:1/0" in down.stderr and "s3cret-canary" not in down.stderr
    assert down.stderr.strip().count("\n") == 0
    timeout = cli("add", "slow", "5", "--wait", "0.2")  # no worker: the wait times out
    assert timeout.returncode == 5
    # A command's own bad input is one line and exit 2, not a traceback.
    for args, message in (
        (("add", "add", "1"), "missing a required argument: 'b'"),
        (("add", "add", "1", "2", "--wait", "-1"), "timeout must be 0 or more"),
    ):
        bad = cli(*args)
        assert bad.returncode == 2, bad.stderr
        assert message in bad.stderr and bad.stderr.strip().count("\n") == 0, bad.stderr
    refused = cli("purge")  # no terminal to confirm on, and no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert cli("purge", "--yes").returncode == 0


def test_every_command_has_help(cli: Cli) -> None:
    for command in (
        "run",
        "add",
        "status",
        "cancel",
        "retry",
        "stats",
        "dead",
        "purge",
        "plugins",
        "demo",
    ):
        out = cli(command, "--help")
        assert out.returncode == 0 and "usage:" in out.stdout, command


def test_plugin_distribution_adds_a_subcommand(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "qtasks_hello.py").write_text(
        textwrap.dedent("""
        def register(sub):
            hello = sub.add_parser("hello", help="say hello")
            hello.set_defaults(handler=lambda args: print("hello from a plugin") or 0)
    """)
    )
    info = site / "qtasks_hello-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qtasks-hello\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[qtasks.commands]\nhello = qtasks_hello:register\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-m", "qtasks", "hello"],
        env=env,
        text=True,
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout.strip() == "hello from a plugin"
    listed = subprocess.run(
        [sys.executable, "-m", "qtasks", "plugins"],
        env=env,
        text=True,
        capture_output=True,
        timeout=30,
    )
    assert "qtasks-hello" in listed.stdout and "hello" in listed.stdout
