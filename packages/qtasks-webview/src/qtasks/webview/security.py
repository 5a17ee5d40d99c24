"""Authentication, CSRF tokens, Host checks and response headers.

The guard is a plain ASGI middleware in front of every route:

* Without auth (loopback only) it accepts only loopback Host names, so a page on another site
  that rebinds its DNS name to 127.0.0.1 cannot read the dashboard (nor its CSRF token).
* With a token: `Authorization: Bearer <token>`, or the session cookie set by `/login` (an
  HMAC of the token, so the cookie never holds the token itself). With basic auth: the browser's
  `Authorization: Basic`. Every comparison is constant-time.
* Unsafe methods from another origin (`Origin`/`Sec-Fetch-Site`) are refused before any route
  runs; each action also checks a CSRF token (`csrf_ok`).
* Every response gets a strict Content-Security-Policy (no inline script at all), nosniff, no
  framing, no referrer and no caching, so task data stays out of shared caches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from qtasks.webview.settings import Settings, is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "qtasks_webview_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PUBLIC_PREFIXES = ("/static/", "/login", "/healthz")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # same-origin, not no-referrer: with no-referrer, browsers send `Origin: null` on form posts.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def session_value(token: str) -> str:
    """The session cookie for `token`: stable across restarts, and useless to recover it."""
    return hmac.new(token.encode(), b"qtasks-webview session", hashlib.sha256).hexdigest()


def csrf_token(settings: Settings, identity: str) -> str:
    """The CSRF token of one identity for this process (stateless: recomputed on each check).
    Another origin cannot read it: pages and the API send no CORS headers."""
    return hmac.new(settings.secret, f"csrf:{identity}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, identity: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(
        presented.encode(), csrf_token(settings, identity).encode()
    )


def identify(settings: Settings, request: Request) -> str | None:
    """Who is asking ('local' when auth is off), or None when the credentials are missing or
    wrong."""
    auth = settings.auth
    if not auth.enabled:
        return "local"
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if auth.token is not None:
        if scheme == "bearer" and hmac.compare_digest(value.strip().encode(), auth.token.encode()):
            return "token"
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and hmac.compare_digest(cookie.encode(), session_value(auth.token).encode()):
            return "token"
    if auth.password is not None and scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
            user, _, password = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user_ok = hmac.compare_digest(user.encode(), (auth.username or "").encode())
        password_ok = hmac.compare_digest(password.encode(), auth.password.encode())
        if user_ok and password_ok:
            return f"basic:{user}"
    return None


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


def _cross_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                for name, value in HEADERS.items():
                    if name.encode() not in names:
                        headers.append((name.encode(), value.encode()))
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, request: Request) -> Response | None:
        settings = self.settings
        if not settings.auth.enabled:
            host = _host_name(request.headers.get("host", ""))
            if not (is_loopback(host) or host in settings.allowed_hosts):
                return PlainTextResponse("unexpected Host header", status_code=400)
        if request.method not in SAFE_METHODS and _cross_origin(request):
            return PlainTextResponse("cross-origin request refused", status_code=403)
        identity = identify(settings, request)
        request.scope.setdefault("state", {})["identity"] = identity
        path = request.url.path
        if identity is not None or path.startswith(PUBLIC_PREFIXES):
            return None
        return self.challenge(request)

    def challenge(self, request: Request) -> Response:
        auth = self.settings.auth
        path = request.url.path
        wants_page = not path.startswith("/api/") and request.method in SAFE_METHODS
        if wants_page and auth.token is not None:
            return RedirectResponse(f"/login?next={quote(path, safe='/')}", status_code=303)
        header = (
            'Basic realm="qtasks", charset="UTF-8"'
            if auth.password is not None
            else ('Bearer realm="qtasks"')
        )
        if path.startswith("/api/"):
            return JSONResponse(
                {"error": "unauthorized"}, status_code=401, headers={"www-authenticate": header}
            )
        return PlainTextResponse(
            "authentication required", status_code=401, headers={"www-authenticate": header}
        )


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to after a form (never another site: no scheme, no '//')."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value
