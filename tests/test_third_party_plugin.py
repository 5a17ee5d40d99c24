"""A third-party plugin installed for real: core's wheel + tests/fixtures/qtasks-acme in a venv.

qtasks-acme lives in its own top-level package and reaches core only through entry points
(`qtasks.brokers` and `qtasks.plugins`). Each probe runs in that venv with `python -I`, so
nothing from this checkout is importable there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "qtasks-acme"

# Shared by the probes: an `acme` tag read from a record, as attribute or from `extra`.
_ACME_OF = """
import json
def acme_of(task):
    extra = getattr(task, "extra", None) or {}
    return extra.get("acme", getattr(task, "acme", None))
"""

FACADE_PROBE = """
from qtasks.brokers import AcmeBroker
print(json.dumps({"module": AcmeBroker.__module__, "schemes": list(AcmeBroker.url_schemes)}))
"""

URL_PROBE = """
from qtasks.asyncio import QueueTasks
app = QueueTasks(broker_url="acme://")
print(json.dumps({"broker": type(app.broker).__name__}))
"""

ASYNC_RUN_PROBE = """
import asyncio
from qtasks.asyncio import QueueTasks
app = QueueTasks(broker_url="acme://")

@app.task(name="double")
async def double(x: int) -> int:
    return 2 * x

async def main():
    async with app:
        task = await app.add_task("double", 21, timeout=5)
        record = await app.get(task.uuid)
    return task, record

task, record = asyncio.run(main())
print(json.dumps({
    "broker": type(app.broker).__name__,
    "success": task.status == "success",
    "returning": task.returning,
    "acme": acme_of(record),
}))
"""

HOOK_PROBE = """
from qtasks import QueueTasks
app = QueueTasks()

@app.task(name="double")
def double(x: int) -> int:
    return 2 * x

with app:
    task = app.add_task("double", 21, timeout=5)
    record = app.get(task.uuid)
print(json.dumps({
    "success": task.status == "success",
    "returning": task.returning,
    "acme": acme_of(record),
    "task_acme": acme_of(task),
}))
"""


def _run(cmd: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, **kwargs
    )
    if result.returncode != 0:
        pytest.fail(
            f"{cmd} exited {result.returncode}\n--- stdout\n{result.stdout}\n"
            f"--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result


@pytest.fixture(scope="module")
def acme_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Python of a fresh venv holding qtasks-core's wheel and qtasks-acme, nothing else of ours."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (needed to build the qtasks-core wheel)")
    tmp = tmp_path_factory.mktemp("acme")
    env = {**os.environ, "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}
    # Wheel built from the sdist, as users get it; --no-sources ignores workspace shortcuts.
    _run(
        [uv, "build", ROOT / "packages" / "qtasks-core", "--no-sources", "-o", tmp / "dist"],
        env=env,
        cwd=ROOT,
    )
    (core_wheel,) = (tmp / "dist").glob("qtasks_core-*.whl")
    # A copy, so pip's in-tree build leaves nothing behind in the checkout.
    acme_src = shutil.copytree(
        FIXTURE,
        tmp / "qtasks-acme",
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
    )
    _run([sys.executable, "-m", "venv", tmp / "venv"])
    python = tmp / "venv" / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", core_wheel, acme_src])
    return python


def probe(python: Path, code: str, **env: str) -> dict[str, Any]:
    """Run `code` with `python -I`; it prints one JSON object as its last line."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("QTASKS_")}
    result = _run(
        [python, "-I", "-c", _ACME_OF + textwrap.dedent(code)],
        env={**base, **env},
        cwd=python.parent,
        timeout=120,
    )
    last_line = result.stdout.strip().splitlines()[-1]
    data: dict[str, Any] = json.loads(last_line)
    return data


def test_facade_exposes_third_party_broker(acme_python: Path) -> None:
    out = probe(acme_python, FACADE_PROBE)
    assert out == {"module": "qtasks_acme.broker", "schemes": ["acme"]}


def test_acme_url_selects_acme_broker(acme_python: Path) -> None:
    assert probe(acme_python, URL_PROBE) == {"broker": "AcmeBroker"}


def test_acme_broker_runs_a_task(acme_python: Path) -> None:
    out = probe(acme_python, ASYNC_RUN_PROBE)
    assert out == {"broker": "AcmeBroker", "success": True, "returning": 42, "acme": "seen"}


@pytest.mark.parametrize(
    ("env", "acme"),
    [
        ({}, "seen"),
        ({"QTASKS_DISABLE_PLUGIN_AUTOLOAD": "1"}, None),
        ({"QTASKS_DISABLED_PLUGINS": "acme"}, None),
        ({"QTASKS_DISABLED_PLUGINS": "sentry, acme"}, None),
    ],
    ids=["autoloaded", "autoload-off", "blocked", "blocked-in-list"],
)
def test_plugin_hook_applies_unless_disabled(
    acme_python: Path, env: dict[str, str], acme: str | None
) -> None:
    out = probe(acme_python, HOOK_PROBE, **env)
    assert out == {"success": True, "returning": 42, "acme": acme, "task_acme": acme}
