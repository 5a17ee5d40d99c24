"""Pages and JSON API over a Redis that a real worker filled (`webview_support.fill`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from starlette.testclient import TestClient
from webview_support import XSS, Filled, WorkerProcess, wait_for
from webview_worker_app import APP_NAME

from qtasks.testing.redis_server import RedisServer
from qtasks.webview import Settings, Target, create_app

pytestmark = pytest.mark.redis

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def client(filled: Filled, secret_redis: RedisServer) -> Iterator[TestClient]:
    app = create_app(Target(APP_NAME, secret_redis.url), Settings())
    with TestClient(app, base_url=BASE) as client:
        yield client


def uuids(payload: dict[str, object]) -> set[str]:
    tasks = payload["tasks"]
    assert isinstance(tasks, list)
    return {t["uuid"] for t in tasks}


def test_overview_counts_what_the_worker_did(client: TestClient, filled: Filled) -> None:
    data = client.get("/api/overview").json()
    assert data["app"] == APP_NAME
    assert data["statuses"] == {
        "new": 1,
        "process": 0,
        "success": 6,
        "error": 4,
        "cancel": 1,
        "retry": 1,
    }
    assert data["dead"] == 1
    assert data["queued"] == 1
    assert data["queues"] == {
        "nobody-listens": {"ready": 1, "delayed": 0, "priorities": {"0": 1}, "total": 1}
    }
    assert data["processing"] == 0
    # Every final write of a worker counts (6 success, 2 boom, flaky's two attempts); the
    # dead letter and the cancel of a queued task were not finished by a worker.
    assert data["finished_last_minute"] == 10
    per_minute = data["throughput"]["per_minute"]
    assert len(per_minute) == 60 and sum(per_minute[-2:]) == 10
    assert data["throughput"]["last_hour"] == 10
    assert data["workers"] == []  # the filling worker stopped and left the registry

    page = client.get("/")
    assert page.status_code == 200
    assert 'id="count-success" data-live="statuses.success">6<' in page.text
    assert 'id="count-error" data-live="statuses.error">4<' in page.text
    assert 'id="count-dead" data-live="dead">1<' in page.text
    assert page.text.count('class="bar"') == 60
    assert "nobody-listens" in page.text


def test_task_list_filters(client: TestClient, filled: Filled) -> None:
    everything = client.get("/api/tasks?limit=200").json()
    assert everything["total"] == 13 and len(everything["tasks"]) == 13
    assert everything["has_more"] is False

    errors = client.get("/api/tasks?status=error").json()
    assert uuids(errors) == {*filled.errors, filled.flaky_child, filled.dead}
    assert errors["total"] == 4

    adds = client.get("/api/tasks?task_name=add").json()
    assert adds["total"] == 7  # 5 ran, 1 cancelled, 1 still queued
    both = client.get("/api/tasks?task_name=add&status=success").json()
    assert uuids(both) == set(filled.success) and both["total"] is None  # a scan: no count
    assert both["truncated"] is False

    prefix = filled.xss[:8]
    found = client.get(f"/api/tasks?q={prefix}").json()
    assert uuids(found) == {filled.xss}
    exact = client.get(f"/api/tasks?q={filled.errors[0]}").json()
    assert uuids(exact) == {filled.errors[0]} and exact["scanned"] == 1
    # The other filters hold for an exact id too (they were ignored).
    for other in ("status=success", "task_name=add", f"until={_iso_hours_ago(1)}"):
        missed = client.get(f"/api/tasks?q={filled.errors[0]}&{other}").json()
        assert missed["tasks"] == [] and missed["total"] == 0, other
    assert uuids(client.get(f"/api/tasks?q={filled.errors[0]}&status=error").json()) == {
        filled.errors[0]
    }

    assert client.get("/api/tasks?window=1h").json()["has_more"] is False
    assert len(client.get("/api/tasks?window=1h&limit=200").json()["tasks"]) == 13
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert client.get(f"/api/tasks?since={future}").json()["tasks"] == []
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    assert client.get("/api/tasks", params={"until": past}).json()["tasks"] == []

    bad = client.get("/api/tasks?status=bogus")
    assert bad.status_code == 400 and "status must be one of" in bad.json()["error"]
    assert client.get("/api/tasks?q=not-hex!").status_code == 400


def test_task_list_pages_cover_every_record_once(client: TestClient) -> None:
    seen: list[str] = []
    offset = 0
    while True:
        page = client.get(f"/api/tasks?limit=5&offset={offset}").json()
        seen += [t["uuid"] for t in page["tasks"]]
        if not page["has_more"]:
            break
        offset += 5
    assert len(seen) == 13 and len(set(seen)) == 13
    # Live tasks (queued) come first, then the most recently finished.
    statuses = [t["status"] for t in client.get("/api/tasks?limit=200").json()["tasks"]]
    assert statuses[0] == "new"

    html = client.get("/tasks?limit=5&offset=5")
    assert html.status_code == 200
    assert html.text.count("<tr data-uuid=") == 5
    assert 'rel="prev"' in html.text and 'rel="next"' in html.text


def test_task_list_page_filters_and_search(client: TestClient, filled: Filled) -> None:
    page = client.get("/tasks?status=error&task_name=boom")
    assert page.status_code == 200
    assert page.text.count("<tr data-uuid=") == 2
    for uuid in filled.errors:
        assert f'data-uuid="{uuid}"' in page.text
    jump = client.get(f"/tasks?q={filled.errors[1]}", follow_redirects=False)
    assert jump.status_code == 303 and jump.headers["location"] == f"/tasks/{filled.errors[1]}"
    bad = client.get("/tasks?window=2y")
    assert bad.status_code == 400 and "window must be one of" in bad.text


def test_task_page_shows_args_result_traceback_timings_worker(
    client: TestClient, filled: Filled
) -> None:
    failed = client.get(f"/api/tasks/{filled.errors[0]}").json()
    assert failed["status"] == "error" and failed["args"] == ["disk on fire"]
    assert "ValueError: disk on fire" in failed["traceback"]
    assert failed["worker"] and failed["started_at"] and failed["finished_at"]
    assert failed["run_seconds"] is not None and failed["wait_seconds"] is not None

    page = client.get(f"/tasks/{filled.errors[0]}")
    assert page.status_code == 200
    assert "ValueError: disk on fire" in page.text
    assert failed["worker"] in page.text
    assert "Retry</button>" in page.text  # a failed task can be run again

    ok = client.get(f"/api/tasks/{filled.success[2]}").json()
    assert ok["returning"] == 102 and ok["kwargs"] == {} and ok["args"] == [2, 100]


def test_retry_chain_links_both_attempts(client: TestClient, filled: Filled) -> None:
    child = client.get(f"/api/tasks/{filled.flaky_child}").json()
    chain = child["chain"]
    assert [link["uuid"] for link in chain] == [filled.flaky, filled.flaky_child]
    assert [link["status"] for link in chain] == ["retry", "error"]
    assert [link["current"] for link in chain] == [False, True]
    parent_page = client.get(f"/tasks/{filled.flaky}")
    assert 'id="retry-chain"' in parent_page.text and filled.flaky_child[:8] in parent_page.text


def test_script_in_args_is_text(client: TestClient, filled: Filled) -> None:
    data = client.get(f"/api/tasks/{filled.xss}").json()
    assert data["args"] == [XSS] and data["kwargs"] == {"note": XSS}
    for path in (f"/tasks/{filled.xss}", "/tasks?task_name=echo"):
        html = client.get(path).text
        assert "<script>window.__qtasks_xss" not in html
        assert "&lt;script&gt;window.__qtasks_xss" in html


def test_dead_letters(client: TestClient, filled: Filled) -> None:
    data = client.get("/api/dead").json()
    assert data["total"] == 1
    [entry] = data["entries"]
    assert entry["uuid"] == filled.dead
    assert entry["reason"] == "unknown_task" and entry["task_name"] == "later"
    page = client.get("/dead")
    assert f'data-uuid="{filled.dead}"' in page.text and "unknown_task" in page.text


def test_schedules_of_the_timer(client: TestClient, filled: Filled) -> None:
    [schedule] = client.get("/api/schedules").json()["schedules"]
    assert schedule["id"] == filled.schedule and schedule["task_name"] == "add"
    assert schedule["args"] == [20, 22] and schedule["last_run"] is None
    next_run = datetime.fromisoformat(schedule["next_run_time"])
    assert (next_run.hour, next_run.minute) == (3, 30)
    assert next_run > datetime.now(timezone.utc)
    page = client.get("/schedules")
    assert "cron[hour=" in page.text and next_run.strftime("%Y-%m-%d %H:%M:%S") in page.text


def test_missing_and_malformed(client: TestClient) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/api/tasks/{unknown}").status_code == 404
    assert client.get(f"/tasks/{unknown}").status_code == 404
    assert client.get("/api/tasks/not-a-uuid").status_code == 400
    assert client.get("/tasks/not-a-uuid").status_code == 404
    assert client.get("/api/tasks?limit=abc").status_code == 400


def test_live_workers_come_and_go(
    client: TestClient, secret_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    worker = WorkerProcess(secret_redis.url, tmp_path_factory.mktemp("w") / "worker.log")
    try:
        found = wait_for(
            lambda: client.get("/api/workers").json()["workers"], 15, "the worker to register"
        )
        [info] = found
        assert info["pid"] == worker.proc.pid and info["heartbeat_age"] < 5
        assert "default" in info["queues"]
        assert str(worker.proc.pid) in client.get("/workers").text
        assert client.get("/api/overview").json()["workers"][0]["id"] == info["id"]
    finally:
        worker.stop()
    # A drained worker deletes its entry (a killed one would drop out with its TTL).
    wait_for(lambda: client.get("/api/workers").json()["workers"] == [], 10, "the worker to leave")


def test_scans_stop_at_their_bound_and_say_so(secret_redis: RedisServer, filled: Filled) -> None:
    from qtasks.webview.source import Source

    source = Source(Target(APP_NAME, secret_redis.url), max_scan=4)
    app = create_app(settings=Settings(), source=source)
    with TestClient(app, base_url=BASE) as client:
        page = client.get("/api/tasks?task_name=add&status=success").json()
        assert page["truncated"] is True and page["scanned"] == 4
        assert page["tasks"] and {t["status"] for t in page["tasks"]} == {"success"}
        assert len(page["tasks"]) < 5  # the older successes were not reached
        assert (
            "older ones were not searched" in client.get("/tasks?task_name=add&status=success").text
        )
        # An index-backed listing has no bound: every page is one range read.
        assert client.get("/api/tasks?status=success").json()["total"] == 6


def test_the_task_list_page_reads_names_not_whole_records(secret_redis: RedisServer) -> None:
    # The filter's name suggestions come from the newest records: before, each was read whole,
    # results included (a page of one row read every large result of the last 200 tasks).
    import redis

    from qtasks import QueueTasks

    name = "webview-big-results"
    big = '"' + "x" * 100_000 + '"'  # a JSON text result of 100 KB
    app = QueueTasks(name=name, broker_url=secret_redis.url)
    for _ in range(20):
        task = app.add_task("report")
        app.broker.storage.update(name=str(task.uuid), mapping={"returning": big})
    admin = redis.Redis.from_url(secret_redis.url)
    with TestClient(create_app(Target(name, secret_redis.url), Settings()), base_url=BASE) as web:
        before = admin.info("stats")["total_net_output_bytes"]
        page = web.get("/tasks?limit=1")
        sent = admin.info("stats")["total_net_output_bytes"] - before
    assert page.status_code == 200 and "report" in page.text
    assert sent < 500_000, sent  # one row of 100 KB and the names; 2 MB before


def _iso_hours_ago(hours: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")
