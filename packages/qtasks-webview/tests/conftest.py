"""Fixtures of the web view tests; helpers live in webview_support.py."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webview_support import CANARY, Filled, fill

from qtasks.testing.pytest_plugin import redis_binary_or_skip
from qtasks.testing.redis_server import RedisServer

with warnings.catch_warnings():
    # Starlette >= 1.8 prefers httpx2 for its TestClient; httpx still works (and is what
    # Starlette 1.7, the last for Python 3.10, needs).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import starlette.testclient  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in the root pyproject; here too for runs with another rootdir.
    known = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    if "browser" not in known:
        config.addinivalue_line("markers", "browser: drives headless Chromium with Playwright")


@pytest.fixture(scope="module")
def secret_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server with a canary password, for the tests of one module."""
    server = RedisServer(
        binary=redis_binary_or_skip(), dir=tmp_path_factory.mktemp("redis"), password=CANARY
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def filled(secret_redis: RedisServer) -> Filled:
    """`secret_redis` holding the tasks `webview_support.fill` ran through a real worker."""
    return fill(secret_redis.url)
