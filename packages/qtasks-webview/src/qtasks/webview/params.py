"""Query parameters and request bodies shared by the pages and the JSON API."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from starlette.requests import Request

from qtasks.webview.records import Filters
from qtasks.webview.source import STATUSES

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_OFFSET = 1_000_000
MAX_BODY = 64 * 1024
WINDOWS = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
HEX_PREFIX = re.compile(r"^[0-9a-f-]{4,36}$")


class BadRequest(ValueError):
    """A parameter that cannot be understood (400; the message is safe to show)."""


def _int(value: str | None, default: int, low: int, high: int, name: str) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    return max(low, min(high, number))


def paging(request: Request, default_limit: int = DEFAULT_LIMIT) -> tuple[int, int]:
    q = request.query_params
    offset = _int(q.get("offset"), 0, 0, MAX_OFFSET, "offset")
    return offset, _int(q.get("limit"), default_limit, 1, MAX_LIMIT, "limit")


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 time, e.g. 2026-01-31T12:00") from None
    # A form's datetime-local field has no zone: the dashboard shows and reads UTC.
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed


def exact_uuid(text: str) -> str | None:
    try:
        return str(UUID(text.strip()))
    except ValueError:
        return None


@dataclass
class TaskQuery:
    filters: Filters
    search: str
    window: str
    exact: str | None
    """The search was a whole uuid: show that task."""

    def as_params(self) -> dict[str, str]:
        """The filters again, for links to other pages of the same listing."""
        f = self.filters
        out = {
            "status": f.status or "",
            "task_name": f.task_name or "",
            "window": self.window,
            "since": "" if self.window or f.since is None else f.since.isoformat(),
            "until": "" if f.until is None else f.until.isoformat(),
            "q": self.search,
        }
        return {k: v for k, v in out.items() if v}


def task_query(request: Request) -> TaskQuery:
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    window = q.get("window") or ""
    if window and window not in WINDOWS:
        raise BadRequest(f"window must be one of {', '.join(WINDOWS)}")
    since = _time(q.get("since"), "since")
    if window:
        since = datetime.now(timezone.utc) - WINDOWS[window]
    search = (q.get("q") or "").strip()
    exact = exact_uuid(search) if search else None
    prefix = None
    if search and exact is None:
        if not HEX_PREFIX.match(search.lower()):
            raise BadRequest("search takes a task uuid or its first characters (hex)")
        prefix = search.lower()
    filters = Filters(
        status=status,
        task_name=(q.get("task_name") or "").strip() or None,
        since=since,
        until=_time(q.get("until"), "until"),
        uuid_prefix=prefix,
    )
    return TaskQuery(filters, search, window, exact)


async def body_fields(request: Request) -> tuple[dict[str, str], bool]:
    """The fields of a form (urlencoded) or JSON object body, and whether it was a form.
    Parsed here rather than with python-multipart: actions only ever send a few short fields."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise BadRequest("request body too large")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        parsed = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}, True
    if not raw.strip():
        return {}, False
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise BadRequest("the body must be a JSON object or a form") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return {str(k): str(v) for k, v in data.items() if v is not None}, False
