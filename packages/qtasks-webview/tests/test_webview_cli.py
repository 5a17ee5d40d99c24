"""`qtasks -A module:app web` and `qtasks-webview`, as processes an operator would start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from webview_support import CANARY, HERE, Filled, free_port, wait_for
from webview_worker_app import APP_NAME

from qtasks.testing.redis_server import RedisServer

pytestmark = pytest.mark.redis

TOKEN = "cli-token-0123456789abcdef"


class Dashboard:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*argv, "--port", str(self.port)],
                cwd=HERE,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.base + path, timeout=5, **kwargs)  # type: ignore[arg-type]

    def wait_ready(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                return self.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 20, "the dashboard to answer")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        return self.log.read_text()


@pytest.fixture
def dashboards(tmp_path: Path) -> Iterator[list[Dashboard]]:
    started: list[Dashboard] = []
    yield started
    for dash in started:
        if dash.proc.poll() is None:
            dash.proc.kill()
            dash.proc.wait(5)


def test_qtasks_web_serves_the_app_named_by_dash_a(
    filled: Filled, secret_redis: RedisServer, tmp_path: Path, dashboards: list[Dashboard]
) -> None:
    # The module builds its app from QT_URL, as a user's module reads its settings.
    dash = Dashboard(
        [sys.executable, "-m", "qtasks", "-A", "webview_worker_app:app", "web"],
        {"QT_URL": secret_redis.url},
        tmp_path / "web.log",
    )
    dashboards.append(dash)
    dash.wait_ready()
    data = dash.get("/api/overview").json()
    assert data["app"] == APP_NAME and data["statuses"]["success"] == 6
    assert data["workers"] == []  # `web` starts no worker and runs no task
    assert dash.get("/api/tasks?status=success").json()["total"] == 6
    output = dash.stop()
    assert CANARY not in output
    assert f"qtasks-webview for app {APP_NAME!r} on http://127.0.0.1:{dash.port}/" in output


def test_console_script_with_url_from_env_and_a_token(
    filled: Filled, secret_redis: RedisServer, tmp_path: Path, dashboards: list[Dashboard]
) -> None:
    script = Path(sys.executable).with_name("qtasks-webview")
    assert script.exists()
    dash = Dashboard(
        [str(script), "--name", APP_NAME],
        {"QTASKS_BROKER_URL": secret_redis.url, "QTASKS_WEBVIEW_TOKEN": TOKEN},
        tmp_path / "script.log",
    )
    dashboards.append(dash)
    dash.wait_ready()
    assert dash.get("/api/overview").status_code == 401
    response = dash.get("/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.json()["dead"] == 1
    output = dash.stop()
    assert CANARY not in output and TOKEN not in output


def test_unreachable_redis_exits_4_with_the_url_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qtasks.webview.cli import main

    port = free_port()
    assert main(["--redis-url", f"redis://:{CANARY}@127.0.0.1:{port}/0", "--port", "0"]) == 4
    err = capsys.readouterr().err
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in err
    assert CANARY not in err


def test_a_malformed_redis_url_is_a_usage_error_with_the_url_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qtasks.webview.cli import main

    # Before: redis-py's ValueError as a traceback, exit 1.
    assert main(["--redis-url", f"redis://:{CANARY}@127.0.0.1:99999/0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "not a usable Redis URL: redis://:***@" in err and CANARY not in err
    assert err.strip().count("\n") == 0


def test_web_needs_a_redis_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qtasks.cli.main import build_parser, main

    assert "web" in build_parser().format_help()
    (tmp_path / "memory_app_for_webview.py").write_text(
        "from qtasks import QueueTasks\napp = QueueTasks(name='m', broker_url='memory://')\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["-A", "memory_app_for_webview:app", "web"]) == 3
    assert "does not use the Redis broker" in capsys.readouterr().err
