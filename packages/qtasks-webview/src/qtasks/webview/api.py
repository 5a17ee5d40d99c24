"""The JSON API (documented in the package README); the pages render the same data.

Actions are POSTs that need the CSRF token (header `X-CSRF-Token` or form field
`csrf_token`, from `GET /api/csrf` or the page). A form post is answered with a redirect back
to the page (`next`), anything else with JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from qtasks.exc import TaskArgumentsError, TaskOptionError, UnknownTaskError
from qtasks.webview.params import BadRequest, body_fields, exact_uuid, paging, task_query
from qtasks.webview.records import task_json
from qtasks.webview.security import CSRF_FIELD, CSRF_HEADER, csrf_ok, csrf_token, safe_next
from qtasks.webview.source import Source

Outcome = tuple[dict[str, Any], int, str | None]
"""(JSON body, status, where a form goes next or None for `next`)."""


MAX_DEAD_ID = 512


def source_of(request: Request) -> Source:
    source: Source = request.app.state.source
    return source


def identity_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("identity") or "")


def _uuid_param(request: Request) -> str:
    uuid = exact_uuid(str(request.path_params["uuid"]))
    if uuid is None:
        raise BadRequest("not a task uuid")
    return uuid


def _dead_id_param(request: Request) -> str:
    """A dead letter's id: a task uuid, or whatever id an entry that never became a task had
    (an undecodable message, a queue entry without payload), which the dead page lists too."""
    text = str(request.path_params["uuid"])
    uuid = exact_uuid(text)
    if uuid is not None:
        return uuid
    if not text or len(text) > MAX_DEAD_ID or not text.isprintable():
        raise BadRequest("not a dead-letter id")
    return text


async def overview(request: Request) -> Response:
    return JSONResponse(await source_of(request).overview())


async def tasks(request: Request) -> Response:
    query = task_query(request)
    offset, limit = paging(request)
    source = source_of(request)
    if query.exact is not None:
        # One record read, then held to the same filters as any listing.
        record = await source.task(query.exact)
        task = record if record is not None and query.filters.matches(record) else None
        found = [] if task is None or offset > 0 else [task_json(task)]
        return JSONResponse(
            {
                "tasks": found,
                "total": 0 if task is None else 1,
                "offset": offset,
                "limit": limit,
                "has_more": False,
                "scanned": 0 if record is None else 1,
                "truncated": False,
            }
        )
    page = await source.tasks(query.filters, offset, limit)
    return JSONResponse(
        {
            "tasks": [task_json(t) for t in page.tasks],
            "total": page.total,
            "offset": page.offset,
            "limit": page.limit,
            "has_more": page.has_more,
            "scanned": page.scanned,
            "truncated": page.truncated,
        }
    )


async def task(request: Request) -> Response:
    detail = await source_of(request).task_detail(_uuid_param(request))
    if detail is None:
        return JSONResponse({"error": "no such task (it may have expired)"}, status_code=404)
    return JSONResponse(detail)


async def dead(request: Request) -> Response:
    offset, limit = paging(request)
    return JSONResponse(await source_of(request).dead(offset, limit))


async def schedules(request: Request) -> Response:
    return JSONResponse({"schedules": await source_of(request).schedules()})


async def workers(request: Request) -> Response:
    return JSONResponse({"workers": await source_of(request).workers()})


async def csrf(request: Request) -> Response:
    settings = request.app.state.settings
    return JSONResponse(
        {"csrf_token": csrf_token(settings, identity_of(request)), "read_only": settings.read_only}
    )


# -- actions ------------------------------------------------------------------------------
async def _act(request: Request, run: Callable[[dict[str, str]], Awaitable[Outcome]]) -> Response:
    settings = request.app.state.settings
    fields, is_form = await body_fields(request)
    presented = request.headers.get(CSRF_HEADER) or fields.get(CSRF_FIELD)
    if not csrf_ok(settings, identity_of(request), presented):
        return JSONResponse({"error": "missing or invalid CSRF token"}, status_code=403)
    if settings.read_only:
        return JSONResponse({"error": "the dashboard is read-only"}, status_code=403)
    body, status, goto = await run(fields)
    if not is_form:
        return JSONResponse(body, status_code=status)
    target = goto or safe_next(fields.get("next"))
    note = {"done": body.get("done") or "", "error": body.get("error_code") or ""}
    query = urlencode({k: v for k, v in note.items() if v})
    return RedirectResponse(
        f"{target}{'&' if '?' in target else '?'}{query}" if query else target, status_code=303
    )


async def cancel(request: Request) -> Response:
    uuid = _uuid_param(request)

    async def run(fields: dict[str, str]) -> Outcome:
        result = await source_of(request).cancel(uuid, fields.get("reason") or None)
        ok = result in ("cancelled", "signalled")
        body: dict[str, Any] = {
            "uuid": uuid,
            "result": result,
            "done" if ok else "error_code": f"cancel_{result}",
        }
        return body, 200 if ok else 409, None

    return await _act(request, run)


async def retry(request: Request) -> Response:
    return await _retry(request, _uuid_param(request))


async def retry_dead(request: Request) -> Response:
    """The dead page's retry: any dead letter's id, not only a task uuid."""
    return await _retry(request, _dead_id_param(request))


async def _retry(request: Request, uuid: str) -> Response:
    async def run(fields: dict[str, str]) -> Outcome:
        try:
            follow = await source_of(request).retry(uuid)
        except (UnknownTaskError, TaskArgumentsError, TaskOptionError) as exc:
            # The app serving the view has tasks, and the record no longer fits one of them.
            return {"uuid": uuid, "error": str(exc), "error_code": "retry_refused"}, 409, None
        if follow is None:
            return (
                {
                    "uuid": uuid,
                    "error": "nothing to retry (not failed, cancelled or dead)",
                    "error_code": "retry_nothing",
                },
                409,
                None,
            )
        goto = None if fields.get("next") else f"/tasks/{follow}"
        return {"uuid": uuid, "task": follow, "done": "retried"}, 200, goto

    return await _act(request, run)


async def purge_dead_one(request: Request) -> Response:
    uuid = _dead_id_param(request)

    async def run(_: dict[str, str]) -> Outcome:
        removed = await source_of(request).purge_dead(uuid)
        if not removed:
            return {"uuid": uuid, "purged": 0, "error_code": "purge_nothing"}, 404, None
        return {"uuid": uuid, "purged": removed, "done": "purged"}, 200, None

    return await _act(request, run)


async def purge_dead_all(request: Request) -> Response:
    async def run(fields: dict[str, str]) -> Outcome:
        # A second, explicit field: purging every dead letter must never be one stray click.
        if fields.get("confirm") != "all":
            return (
                {
                    "error": "send confirm=all to purge every dead letter",
                    "error_code": "purge_unconfirmed",
                },
                400,
                None,
            )
        removed = await source_of(request).purge_dead(None)
        return {"purged": removed, "done": "purged_all"}, 200, None

    return await _act(request, run)


routes = [
    Route("/api/overview", overview),
    Route("/api/tasks", tasks),
    Route("/api/tasks/{uuid}", task),
    Route("/api/tasks/{uuid}/cancel", cancel, methods=["POST"]),
    Route("/api/tasks/{uuid}/retry", retry, methods=["POST"]),
    Route("/api/dead", dead),
    Route("/api/dead/purge", purge_dead_all, methods=["POST"]),
    Route("/api/dead/{uuid}/retry", retry_dead, methods=["POST"]),
    Route("/api/dead/{uuid}/purge", purge_dead_one, methods=["POST"]),
    Route("/api/schedules", schedules),
    Route("/api/workers", workers),
    Route("/api/csrf", csrf),
]
