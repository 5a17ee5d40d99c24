"""Authentication, the bind rule, Host checks, headers, and no secret in any response."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from webview_support import CANARY, Filled, free_port
from webview_worker_app import APP_NAME

from qtasks.testing.redis_server import RedisServer
from qtasks.webview import Auth, InsecureBindError, Settings, Target, create_app
from qtasks.webview.security import SESSION_COOKIE

pytestmark = pytest.mark.redis

BASE = "http://127.0.0.1:8000"
TOKEN = "t0ken-for-the-tests-0123456789"


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture(scope="module")
def token_client(filled: Filled, secret_redis: RedisServer) -> Iterator[TestClient]:
    settings = Settings(auth=Auth(token=TOKEN))
    with TestClient(create_app(Target(APP_NAME, secret_redis.url), settings), base_url=BASE) as c:
        yield c


def test_token_auth_on_the_api(token_client: TestClient, filled: Filled) -> None:
    for path in (
        "/api/overview",
        "/api/tasks",
        f"/api/tasks/{filled.xss}",
        "/api/dead",
        "/api/workers",
        "/api/schedules",
        "/api/csrf",
    ):
        anonymous = token_client.get(path)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        wrong = token_client.get(path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
        assert wrong.status_code == 401, path
        right = token_client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200, path
    # Actions too: no credentials is 401 before any CSRF question.
    refused = token_client.post(f"/api/tasks/{filled.errors[0]}/retry")
    assert refused.status_code == 401


def test_token_auth_in_the_browser_uses_a_login_and_a_session_cookie(
    token_client: TestClient, filled: Filled
) -> None:
    token_client.cookies.clear()
    page = token_client.get("/tasks", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/tasks"
    assert token_client.get("/static/webview.css").status_code == 200  # assets are public
    login = token_client.get("/login?next=/tasks")
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', login.text)
    assert csrf is not None
    failed = token_client.post(
        "/login",
        data={"csrf_token": csrf[1], "token": "nope", "next": "/tasks"},
        follow_redirects=False,
    )
    assert failed.status_code == 401 and SESSION_COOKIE not in failed.cookies
    no_csrf = token_client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert no_csrf.status_code == 403
    ok = token_client.post(
        "/login",
        data={"csrf_token": csrf[1], "token": TOKEN, "next": "/tasks"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/tasks"
    cookie = ok.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie  # the cookie is an HMAC of the token, not the token
    assert "secure" not in cookie.lower()  # plain HTTP, no proxy saying otherwise
    assert token_client.get("/tasks").status_code == 200
    # Behind a TLS proxy the cookie is Secure (before, never: the proxy speaks HTTP to us).
    token_client.cookies.clear()  # the login form's CSRF token is the anonymous caller's
    proxied = token_client.post(
        "/login",
        data={"csrf_token": csrf[1], "token": TOKEN, "next": "/tasks"},
        headers={"X-Forwarded-Proto": "https"},
        follow_redirects=False,
    )
    assert proxied.status_code == 303 and "secure" in proxied.headers["set-cookie"].lower()
    token_client.cookies.set(SESSION_COOKIE, proxied.cookies[SESSION_COOKIE])
    # Logged in, a POST still needs the CSRF token of this identity.
    assert token_client.post(f"/api/tasks/{filled.errors[0]}/retry").status_code == 403
    token_client.cookies.clear()


def test_basic_auth(secret_redis: RedisServer, filled: Filled) -> None:
    settings = Settings(auth=Auth(username="ops", password="s3cret-pass"))
    app = create_app(Target(APP_NAME, secret_redis.url), settings)
    with TestClient(app, base_url=BASE) as client:
        anonymous = client.get("/")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic")
        assert client.get("/", headers=basic("ops", "wrong")).status_code == 401
        assert client.get("/", headers=basic("root", "s3cret-pass")).status_code == 401
        assert client.get("/api/overview", headers=basic("ops", "s3cret-pass")).status_code == 200
        # Browsers resend basic credentials by themselves: a POST needs the CSRF token.
        post = client.post(
            f"/api/tasks/{filled.errors[0]}/retry", headers=basic("ops", "s3cret-pass")
        )
        assert post.status_code == 403


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com", "[::]"])
def test_refuses_a_public_bind_without_auth(host: str) -> None:
    with pytest.raises(InsecureBindError, match="without authentication"):
        Settings(host=host).check_bind()
    Settings(host=host, auth=Auth(token=TOKEN)).check_bind()
    Settings(host=host, auth=Auth(username="u", password="p")).check_bind()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_binds_without_auth(host: str) -> None:
    Settings(host=host).check_bind()


def test_the_cli_refuses_a_public_bind_without_auth(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from qtasks.webview.cli import main

    monkeypatch.delenv("QTASKS_WEBVIEW_TOKEN", raising=False)
    monkeypatch.delenv("QTASKS_WEBVIEW_PASSWORD", raising=False)
    url = f"redis://:{CANARY}@127.0.0.1:{free_port()}/0"
    assert main(["--redis-url", url, "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on '0.0.0.0' without authentication" in err
    assert CANARY not in err
    with pytest.raises(ValueError, match="at least 16"):
        Auth(token="short")


def test_no_auth_accepts_only_loopback_host_names(secret_redis: RedisServer) -> None:
    app = create_app(Target(APP_NAME, secret_redis.url), Settings())
    with TestClient(app, base_url="http://evil.example") as client:
        assert client.get("/api/overview").status_code == 400  # a DNS-rebinding page
    with TestClient(app, base_url="http://localhost:8123") as client:
        assert client.get("/api/overview").status_code == 200
    allowed = Settings(allowed_hosts=("dash.internal",))
    with TestClient(
        create_app(Target(APP_NAME, secret_redis.url), allowed), base_url="http://dash.internal"
    ) as client:
        assert client.get("/api/overview").status_code == 200


def test_security_headers(token_client: TestClient) -> None:
    response = token_client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "server" not in response.headers or "uvicorn" not in response.headers["server"]


def _every_response(client: TestClient, filled: Filled) -> list[tuple[str, str]]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    paths = [
        "/",
        "/tasks",
        "/tasks?status=error",
        "/tasks?q=zz",
        "/tasks?window=9y",
        "/dead",
        "/schedules",
        "/workers",
        "/login",
        "/healthz",
        "/api/overview",
        "/api/tasks",
        "/api/tasks?limit=200",
        "/api/dead",
        "/api/schedules",
        "/api/workers",
        "/api/csrf",
        "/api/tasks/not-a-uuid",
        "/nope",
        "/static/webview.js",
        *(f"/tasks/{u}" for u in (*filled.success, *filled.errors, filled.xss, filled.dead)),
        *(f"/api/tasks/{u}" for u in (filled.flaky, filled.flaky_child, filled.cancelled)),
    ]
    out = []
    for path in paths:
        for headers in (auth, {}):
            response = client.get(path, headers=headers)
            out.append((path, response.text + repr(dict(response.headers))))
    response = client.post(f"/api/tasks/{filled.errors[0]}/retry", headers=auth)
    out.append(("POST retry", response.text + repr(dict(response.headers))))
    return out


def test_no_redis_url_or_password_in_any_response(
    token_client: TestClient, filled: Filled, secret_redis: RedisServer
) -> None:
    for path, text in _every_response(token_client, filled):
        assert CANARY not in text, path
        assert "redis://" not in text, path
        assert str(secret_redis.port) not in text, path


def test_no_secret_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:{CANARY}@127.0.0.1:{port}/0"
    settings = Settings(auth=Auth(token=TOKEN))
    with TestClient(create_app(Target(APP_NAME, url), settings), base_url=BASE) as client:
        for path in ("/", "/api/overview", "/tasks", "/api/dead"):
            response = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 503, path
            text = response.text + repr(dict(response.headers))
            assert CANARY not in text and str(port) not in text and "redis://" not in text
    assert CANARY not in caplog.text
