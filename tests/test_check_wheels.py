"""scripts/check_wheels.py against small hand-made wheels (no build needed)."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_FILES = [
    "qtasks/__init__.py",
    "qtasks/py.typed",
    "qtasks/brokers/__init__.py",
    "qtasks/brokers/memory.py",
]
CORE_EPS = "[qtasks.brokers]\nAsyncMemoryBroker = qtasks.brokers.memory:AsyncMemoryBroker\n"


@pytest.fixture(scope="module")
def check_wheels() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_wheels", ROOT / "scripts/check_wheels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_wheel(
    dist: Path, name: str, files: list[str], version: str = "2.0.0", eps: str | None = None
) -> None:
    stem = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(dist / f"{stem}-py3-none-any.whl", "w") as zf:
        for f in files:
            zf.writestr(f, "")
        zf.writestr(
            f"{stem}.dist-info/METADATA",
            f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n",
        )
        zf.writestr(f"{stem}.dist-info/RECORD", "")
        if eps is not None:
            zf.writestr(f"{stem}.dist-info/entry_points.txt", eps)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    make_wheel(tmp_path, "qtasks-core", CORE_FILES, eps=CORE_EPS)
    return tmp_path


def run(check_wheels: ModuleType, dist: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code = check_wheels.main([str(dist)])
    problems = [line for line in capsys.readouterr().out.splitlines() if "PROBLEM" in line]
    assert code == (1 if problems else 0)
    return problems


def test_good_layout_passes(
    check_wheels: ModuleType, dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_wheel(dist, "qtasks-redis", ["qtasks/redis/__init__.py", "qtasks/redis/py.typed"], eps="")
    make_wheel(dist, "qtasks-otel", ["qtasks/otel/__init__.py", "qtasks/otel/py.typed"])
    (dist / "qtasks_core-2.0.0.tar.gz").write_bytes(b"")
    assert run(check_wheels, dist, capsys) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["qtasks/__init__.py", "qtasks/redis/__init__.py"], "qtasks/__init__.py, which only"),
        (["qtasks/py.typed", "qtasks/redis/__init__.py"], "qtasks/py.typed, which only"),
        (["qtasks/redis/a.py", "qtasks/timer/b.py"], "2 leaves"),
        (["qtasks/brokers/redis.py"], "a directory of qtasks-core"),
        (["qtasks/brokers/__init__.py"], "which qtasks-core also ships"),
        (["qtasks/redis.py"], "directly in the shared"),
        (["qtasks/cache/x.py"], "should be qtasks/redis/"),
        (["tests/test_x.py", "qtasks/redis/x.py"], "outside qtasks/<leaf>/"),
    ],
)
def test_bad_plugin_wheels_fail(
    check_wheels: ModuleType,
    dist: Path,
    capsys: pytest.CaptureFixture[str],
    files: list[str],
    expected: str,
) -> None:
    make_wheel(dist, "qtasks-redis", files)
    problems = run(check_wheels, dist, capsys)
    assert any(expected in p for p in problems), problems


def test_core_needs_entry_points(
    check_wheels: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_wheel(tmp_path, "qtasks-core", CORE_FILES)
    assert any("no entry_points.txt" in p for p in run(check_wheels, tmp_path, capsys))


def test_versions_must_match(
    check_wheels: ModuleType, dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_wheel(dist, "qtasks-timer", ["qtasks/timer/__init__.py"], version="2.0.1")
    assert any("versions differ" in p for p in run(check_wheels, dist, capsys))
    make_wheel(dist, "qtasks-timer", ["qtasks/timer/__init__.py"])
    (dist / "qtasks_timer-2.0.1-py3-none-any.whl").unlink()
    (dist / "qtasks_sentry-1.9.0.tar.gz").write_bytes(b"")
    assert any("qtasks-sentry (sdist)==1.9.0" in p for p in run(check_wheels, dist, capsys))


def test_missing_core_and_third_party_ignored(
    check_wheels: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_wheel(
        tmp_path,
        "qtasks-redis",
        ["qtasks/redis/__init__.py"],
        eps="[qtasks.brokers]\nSyncRedisBroker = qtasks.redis:SyncRedisBroker\n",
    )
    make_wheel(tmp_path, "other-lib", ["qtasks/__init__.py"], version="9.9")
    assert run(check_wheels, tmp_path, capsys) == ["PROBLEM: no qtasks-core wheel in the dist dir"]
