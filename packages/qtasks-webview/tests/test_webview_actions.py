"""Actions (cancel, retry, purge) and their CSRF protection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient
from webview_support import Filled, fill
from webview_worker_app import APP_NAME, build

from qtasks.testing.redis_server import RedisServer
from qtasks.webview import Settings, Target, create_app

pytestmark = pytest.mark.redis

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def filled(secret_redis: RedisServer) -> Filled:
    return fill(secret_redis.url, dead_letters=3)


@pytest.fixture(scope="module")
def client(filled: Filled, secret_redis: RedisServer) -> Iterator[TestClient]:
    app = create_app(Target(APP_NAME, secret_redis.url), Settings())
    with TestClient(app, base_url=BASE) as client:
        yield client


@pytest.fixture(scope="module")
def csrf(client: TestClient) -> str:
    token = client.get("/api/csrf").json()["csrf_token"]
    assert isinstance(token, str) and len(token) == 64
    return token


def test_posts_without_a_valid_csrf_token_are_refused(
    client: TestClient, filled: Filled, csrf: str
) -> None:
    for path in (
        f"/api/tasks/{filled.errors[0]}/retry",
        f"/api/tasks/{filled.queued}/cancel",
        f"/api/dead/{filled.dead}/retry",
        f"/api/dead/{filled.dead}/purge",
        "/api/dead/purge",
    ):
        missing = client.post(path)
        assert missing.status_code == 403, path
        assert missing.json() == {"error": "missing or invalid CSRF token"}
        wrong = client.post(path, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403, path
        as_form = client.post(path, data={"csrf_token": csrf[:-1] + "x"})
        assert as_form.status_code == 403, path
    # Nothing happened.
    assert client.get(f"/api/tasks/{filled.queued}").json()["status"] == "new"
    assert client.get("/api/dead").json()["total"] == 3
    # A page's form carries the token.
    assert f'name="csrf_token" value="{csrf}"' in client.get("/dead").text


def test_cross_origin_posts_are_refused_even_with_the_token(
    client: TestClient, filled: Filled, csrf: str
) -> None:
    response = client.post(
        f"/api/tasks/{filled.queued}/cancel",
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert response.status_code == 403
    response = client.post(
        f"/api/tasks/{filled.queued}/cancel",
        headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
    assert client.get(f"/api/tasks/{filled.queued}").json()["status"] == "new"


def test_cancel_a_queued_task(client: TestClient, filled: Filled, csrf: str) -> None:
    response = client.post(
        f"/api/tasks/{filled.queued}/cancel",
        json={"reason": "from the test"},
        headers={"X-CSRF-Token": csrf, "Origin": BASE},
    )
    assert response.status_code == 200 and response.json()["result"] == "cancelled"
    task = client.get(f"/api/tasks/{filled.queued}").json()
    assert task["status"] == "cancel" and task["cancel_reason"] == "from the test"
    assert client.get("/api/overview").json()["queued"] == 0
    again = client.post(f"/api/tasks/{filled.queued}/cancel", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and again.json()["result"] == "final"


def test_retry_a_failed_task_makes_a_linked_new_task(
    client: TestClient, filled: Filled, csrf: str
) -> None:
    response = client.post(f"/api/tasks/{filled.errors[0]}/retry", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    new = response.json()["task"]
    assert new != filled.errors[0]
    task = client.get(f"/api/tasks/{new}").json()
    assert task["status"] == "new" and task["args"] == ["disk on fire"]
    assert task["retried_from"] == filled.errors[0]
    assert [link["uuid"] for link in task["chain"]] == [filled.errors[0], new]
    success = client.post(f"/api/tasks/{filled.success[0]}/retry", headers={"X-CSRF-Token": csrf})
    assert success.status_code == 409


def test_form_retry_from_the_dead_letter_page_redirects_back(
    client: TestClient, filled: Filled, csrf: str
) -> None:
    response = client.post(
        f"/api/dead/{filled.dead}/retry",
        data={"csrf_token": csrf, "next": "/dead"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/dead?done=retried"
    page = client.get(response.headers["location"])
    assert "The task was sent to run again." in page.text
    assert f'data-uuid="{filled.dead}"' not in page.text
    # Back in its queue under its own id, waiting for a worker that knows `later`.
    assert client.get(f"/api/tasks/{filled.dead}").json()["status"] == "new"
    # (with the failed task retried above)
    assert client.get("/api/overview").json()["queues"]["default"]["ready"] == 2
    # `next` is a local path only.
    evil = client.post(
        f"/api/dead/{filled.more_dead[0]}/retry",
        data={"csrf_token": csrf, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert evil.status_code == 303 and evil.headers["location"] == "/?done=retried"


def test_purge_one_then_all_dead_letters(client: TestClient, filled: Filled, csrf: str) -> None:
    assert client.get("/api/dead").json()["total"] == 1  # two of three were retried above
    [entry] = client.get("/api/dead").json()["entries"]
    headers = {"X-CSRF-Token": csrf}
    unconfirmed = client.post("/api/dead/purge", headers=headers)
    assert unconfirmed.status_code == 400
    assert client.get("/api/dead").json()["total"] == 1
    one = client.post(f"/api/dead/{entry['uuid']}/purge", headers=headers)
    assert one.status_code == 200 and one.json()["purged"] == 1
    assert client.post(f"/api/dead/{entry['uuid']}/purge", headers=headers).status_code == 404
    everything = client.post("/api/dead/purge", json={"confirm": "all"}, headers=headers)
    assert everything.status_code == 200 and everything.json()["purged"] == 0
    assert client.get("/api/overview").json()["dead"] == 0


def test_read_only_mode_refuses_actions_and_hides_them(
    secret_redis: RedisServer, filled: Filled
) -> None:
    app = create_app(Target(APP_NAME, secret_redis.url), Settings(read_only=True))
    with TestClient(app, base_url=BASE) as client:
        token = client.get("/api/csrf").json()["csrf_token"]
        response = client.post(
            f"/api/tasks/{filled.errors[1]}/retry", headers={"X-CSRF-Token": token}
        )
        assert response.status_code == 403 and "read-only" in response.json()["error"]
        page = client.get(f"/tasks/{filled.errors[1]}").text
        assert "Retry</button>" not in page and "read-only" in page


def test_a_dead_letter_that_never_was_a_task_can_be_purged(secret_redis: RedisServer) -> None:
    # A queue entry without a payload is dead-lettered under its own id, which need not be a
    # uuid. Before, its Purge and Retry buttons answered 400 ("not a task uuid").
    name = "webview-dead-ids"
    admin = redis.Redis.from_url(secret_redis.url)
    admin.zadd(f"{name}:q:default", {"legacy-id-42": 0})
    admin.sadd(f"{name}:queues", "default")
    worker_app = build(secret_redis.url, name=name)

    async def drain() -> None:
        async with worker_app:
            for _ in range(200):
                if [e.uuid for e in await worker_app.broker.list_dead()] == ["legacy-id-42"]:
                    return
                await asyncio.sleep(0.02)
        raise AssertionError("the entry was not dead-lettered")

    asyncio.run(drain())
    with TestClient(create_app(Target(name, secret_redis.url), Settings()), base_url=BASE) as web:
        headers = {"X-CSRF-Token": web.get("/api/csrf").json()["csrf_token"]}
        assert 'action="/api/dead/legacy-id-42/purge"' in web.get("/dead").text
        retried = web.post("/api/dead/legacy-id-42/retry", headers=headers)
        assert retried.status_code == 409  # nothing to run: it has no payload
        purged = web.post("/api/dead/legacy-id-42/purge", headers=headers)
        assert purged.status_code == 200 and purged.json()["purged"] == 1
        assert web.get("/api/dead").json()["total"] == 0
        control = web.post("/api/dead/bad%0Aid/purge", headers=headers)
        assert control.status_code == 400  # not text an id could be


def test_a_retry_the_serving_apps_task_no_longer_takes_is_refused(
    filled: Filled, secret_redis: RedisServer
) -> None:
    from qtasks.asyncio import QueueTasks
    from qtasks.webview.source import Source

    served = QueueTasks(name=APP_NAME, broker_url=secret_redis.url)

    @served.task(name="boom")
    async def boom() -> None:  # a deploy dropped its parameter
        return None

    view = create_app(source=Source(Target(APP_NAME, secret_redis.url), app=served))
    with TestClient(view, base_url=BASE) as client:
        token = client.get("/api/csrf").json()["csrf_token"]
        response = client.post(
            f"/api/tasks/{filled.errors[0]}/retry", headers={"X-CSRF-Token": token}
        )
        assert response.status_code == 409, response.text
        assert response.json()["error_code"] == "retry_refused"
        assert "boom" in response.json()["error"]
        form = client.post(
            f"/api/tasks/{filled.errors[0]}/retry",
            data={"csrf_token": token, "next": "/tasks"},
            follow_redirects=False,
        )
        assert form.status_code == 303 and "error=retry_refused" in form.headers["location"]
        assert "no longer takes it" in client.get(form.headers["location"]).text
