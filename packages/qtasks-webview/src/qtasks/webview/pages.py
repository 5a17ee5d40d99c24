"""The HTML pages: Jinja2 templates over the same data as the JSON API.

Autoescaping is on for every template and no template marks task data safe, so args, results,
tracebacks and names are always text. The only script is the static `webview.js`, which
refreshes pages from the JSON API and writes with `textContent`.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from qtasks.webview import __version__
from qtasks.webview.api import identity_of, source_of
from qtasks.webview.params import (
    WINDOWS,
    BadRequest,
    body_fields,
    exact_uuid,
    paging,
    task_query,
)
from qtasks.webview.records import pretty, preview, task_json
from qtasks.webview.security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    csrf_ok,
    csrf_token,
    safe_next,
    session_value,
)
from qtasks.webview.source import STATUSES

HERE = Path(__file__).resolve().parent

MESSAGES = {
    "cancelled": "Cancel requested.",
    "cancel_cancelled": "The task was cancelled.",
    "cancel_signalled": "The running task was asked to stop.",
    "cancel_final": "The task had already finished.",
    "cancel_unknown": "No such task.",
    "retried": "The task was sent to run again.",
    "retry_nothing": "Nothing to retry: the task is not failed, cancelled or dead-lettered.",
    "retry_refused": "The task cannot run again as it was: its definition no longer takes it.",
    "purged": "The dead letter was purged.",
    "purged_all": "Every dead letter was purged.",
    "purge_nothing": "No such dead letter.",
    "purge_unconfirmed": "Tick the confirmation to purge every dead letter.",
}
"""The only texts a redirect can ask a page to show (by key: no text travels in the URL)."""


def _when(value: str | None) -> str:
    if not value:
        return "—"
    return datetime.fromisoformat(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = pretty
    env.filters["preview"] = preview
    env.filters["when"] = _when
    return env


templates = Jinja2Templates(env=_environment())


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    settings = request.app.state.settings
    query = request.query_params
    messages = [MESSAGES[k] for k in (query.get("done"), query.get("error")) if k in MESSAGES]
    context.update(
        app_name=source_of(request).name,
        csrf=csrf_token(settings, identity_of(request)),
        read_only=settings.read_only,
        poll_ms=int(settings.poll_interval * 1000),
        token_auth=settings.auth.token is not None,
        version=__version__,
        messages=messages,
        path=request.url.path,
        full_path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)


async def overview(request: Request) -> Response:
    data = await source_of(request).overview()
    return render(request, "overview.html", page="overview", data=data)


async def tasks(request: Request) -> Response:
    source = source_of(request)
    try:
        query = task_query(request)
        offset, limit = paging(request)
    except BadRequest as exc:
        return render(
            request,
            "tasks.html",
            400,
            page="tasks",
            error=str(exc),
            page_data=None,
            query=None,
            statuses=STATUSES,
            windows=list(WINDOWS),
            names=[],
            links={},
            rows=[],
        )
    if query.exact is not None:
        return RedirectResponse(f"/tasks/{query.exact}", status_code=303)
    page_data = await source.tasks(query.filters, offset, limit)
    params = query.as_params()

    def link(new_offset: int) -> str:
        return "/tasks?" + urlencode({**params, "offset": new_offset, "limit": limit})

    links = {
        "prev": link(max(0, offset - limit)) if offset > 0 else None,
        "next": link(offset + limit) if page_data.has_more else None,
    }
    return render(
        request,
        "tasks.html",
        page="tasks",
        error=None,
        page_data=page_data,
        query=query,
        statuses=STATUSES,
        windows=list(WINDOWS),
        names=await source.records.recent_names(),
        links=links,
        rows=[task_json(t) for t in page_data.tasks],
    )


async def task(request: Request) -> Response:
    uuid = exact_uuid(str(request.path_params["uuid"]))
    detail = None if uuid is None else await source_of(request).task_detail(uuid)
    if detail is None:
        return render(
            request,
            "missing.html",
            404,
            page="tasks",
            what="No task with this id (it may have expired).",
        )
    return render(request, "task.html", page="tasks", task=detail)


async def dead(request: Request) -> Response:
    offset, limit = paging(request)
    data = await source_of(request).dead(offset, limit)
    links = {
        "prev": f"/dead?offset={max(0, offset - limit)}&limit={limit}" if offset else None,
        "next": (
            f"/dead?offset={offset + limit}&limit={limit}"
            if offset + limit < data["total"]
            else None
        ),
    }
    return render(request, "dead.html", page="dead", data=data, links=links)


async def schedules(request: Request) -> Response:
    return render(
        request, "schedules.html", page="schedules", schedules=await source_of(request).schedules()
    )


async def workers(request: Request) -> Response:
    return render(
        request, "workers.html", page="workers", workers=await source_of(request).workers()
    )


async def login(request: Request) -> Response:
    settings = request.app.state.settings
    next_path = safe_next(request.query_params.get("next"))
    if settings.auth.token is None:
        return RedirectResponse(next_path, status_code=303)
    if request.method == "GET":
        return render(request, "login.html", page="login", next_path=next_path, failed=False)
    fields, _ = await body_fields(request)
    next_path = safe_next(fields.get("next"))
    if not csrf_ok(settings, identity_of(request), fields.get(CSRF_FIELD)):
        return render(request, "login.html", 403, page="login", next_path=next_path, failed=True)
    token = fields.get("token", "")
    if not hmac.compare_digest(settings.auth.token.encode(), token.encode()):
        return render(request, "login.html", 401, page="login", next_path=next_path, failed=True)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(settings.auth.token),
        httponly=True,
        samesite="strict",
        # Behind a TLS proxy the request itself is plain HTTP: the proxy's header says HTTPS.
        # A client that sends it over HTTP only makes its own cookie stricter.
        secure=request.url.scheme == "https"
        or request.headers.get("x-forwarded-proto", "").lower() == "https",
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    fields, _ = await body_fields(request)
    if not csrf_ok(request.app.state.settings, identity_of(request), fields.get(CSRF_FIELD)):
        return Response("missing or invalid CSRF token", status_code=403)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def healthz(request: Request) -> Response:
    return Response("ok", media_type="text/plain")


routes = [
    Route("/", overview),
    Route("/tasks", tasks),
    Route("/tasks/{uuid}", task),
    Route("/dead", dead),
    Route("/schedules", schedules),
    Route("/workers", workers),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/healthz", healthz),
]
