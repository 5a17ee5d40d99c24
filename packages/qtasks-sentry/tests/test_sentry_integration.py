"""`QtasksIntegration` through `sentry_sdk.init(integrations=[...])`, each case in a fresh process.

`setup_once` patches qtasks for the life of a process, so these run in subprocesses and leave
this test process unpatched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sentry_sdk.integrations import Integration

from qtasks.sentry import QtasksIntegration

APP = Path(__file__).resolve().parent / "sentry_integration_app.py"


def scenario(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(APP), mode], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_is_a_sentry_integration() -> None:
    assert issubclass(QtasksIntegration, Integration)
    assert QtasksIntegration.identifier == "qtasks"
    assert QtasksIntegration().report_retries is False


def test_apps_made_before_and_after_init_report_last_failures() -> None:
    result = scenario("default")
    assert result["statuses"] == ["error", "error"]
    assert result["plugins"] == [["qtasks.sentry"], ["qtasks.sentry"]]
    # One event per task (the last attempt), none for the retried attempt.
    assert result["errors"] == [["boom in after", "1"], ["boom in before", "1"]]
    assert result["transactions"] == 4  # one per attempt
    assert result["enqueue_breadcrumbs"] == [1]


def test_report_retries_option() -> None:
    result = scenario("report_retries")
    assert result["errors"] == [
        ["boom in after", "0"],
        ["boom in after", "1"],
        ["boom in before", "0"],
        ["boom in before", "1"],
    ]


def test_explicit_plugin_beside_the_integration_reports_once() -> None:
    result = scenario("with_explicit_plugin")
    assert result["errors"] == [["boom in after", "1"], ["boom in before", "1"]]
    assert result["transactions"] == 4
    assert result["enqueue_breadcrumbs"] == [1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_client_without_the_integration_gets_nothing() -> None:
    result = scenario("client_without_integration")
    assert result["statuses"] == ["error", "error", "error"]
    assert result["errors"] == [] and result["transactions"] == 0
