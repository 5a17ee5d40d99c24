"""The before-release gate (scripts/release_check.sh) passes on this checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_release_check_passes() -> None:
    # Builds every sdist and wheel into dist/, checks them, and probes each in a fresh venv.
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "release_check.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    assert result.returncode == 0, (
        f"release_check.sh exited {result.returncode}\n--- stdout\n{result.stdout[-10000:]}\n"
        f"--- stderr\n{result.stderr[-10000:]}"
    )
    assert "release_check: OK" in result.stdout
