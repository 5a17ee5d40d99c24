"""Task records read straight from qtasks-redis's indexes (see `qtasks.redis.keys`).

Each index is a sorted set whose score is the record's expiry (finished records), a far-future
value (finished without a TTL) or a "live" value (queued or running); reversed, it lists live
tasks first, then the most recently finished. Entries whose record expired score at most the
server's clock, sort last, and are simply not read: so a page of an unfiltered index costs one
ZREVRANGE by rank plus one HGETALL per row, however deep the page, and the dashboard writes
nothing (the workers prune). Filters that no index answers (status within a task name, a time
range, a uuid prefix) scan the index newest first, up to a bound, and say when they stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qtasks.schemas.task import Task, from_mapping

REQUIRED = ("status", "uuid", "task_name")
BATCH = 200


@dataclass
class Page:
    tasks: list[Task]
    total: int | None
    """Matches in all (None when a scan could not count them)."""
    offset: int
    limit: int
    has_more: bool
    scanned: int = 0
    truncated: bool = False
    """The scan bound was reached: older matches may exist."""


@dataclass
class Filters:
    status: str | None = None
    task_name: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    uuid_prefix: str | None = None

    def needs_scan(self) -> bool:
        both = self.status is not None and self.task_name is not None
        return both or self.since is not None or self.until is not None or bool(self.uuid_prefix)

    def matches(self, task: Task) -> bool:
        """Every filter but the uuid prefix (a scan decides that on the id alone)."""
        if self.status is not None and task.status != self.status:
            return False
        if self.task_name is not None and task.task_name != self.task_name:
            return False
        if self.since is not None and task.created_at < self.since:
            return False
        return self.until is None or task.created_at <= self.until


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(reply: Any) -> Task | None:
    """An HGETALL reply as a Task, or None (gone, or not a record)."""
    if not reply:
        return None
    mapping = {_text(k): _text(v) for k, v in dict(reply).items()}
    if not all(k in mapping for k in REQUIRED):
        return None
    try:
        return from_mapping(mapping)
    except (ValueError, KeyError, TypeError):
        return None  # written by something else: a listing must not break on it


class RecordReader:
    """Listings over one app's record indexes (an async redis-py client)."""

    def __init__(self, storage: Any, max_scan: int = 10_000) -> None:
        self.storage = storage
        self.keys = storage.record_keys
        self.max_scan = max_scan

    @property
    def client(self) -> Any:
        return self.storage.client

    async def now_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def index_for(self, filters: Filters) -> str:
        if filters.task_name:
            return str(self.keys.index_name(filters.task_name))
        if filters.status:
            return str(self.keys.index_status(filters.status))
        return str(self.keys.index_all)

    async def live_count(self, index: str, now_ms: int) -> int:
        return int(await self.client.zcount(index, f"({now_ms}", "+inf"))

    async def fetch(self, ids: list[str]) -> list[Task]:
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(self.keys.record(task_id))
        replies = await pipe.execute()
        return [t for t in (decode(r) for r in replies) if t is not None]

    async def page(self, filters: Filters, offset: int, limit: int) -> Page:
        index = self.index_for(filters)
        now = await self.now_ms()
        total = await self.live_count(index, now)
        if filters.needs_scan():
            return await self._scan(index, total, filters, offset, limit)
        end = min(offset + limit, total)
        ids = [] if offset >= end else await self.client.zrevrange(index, offset, end - 1)
        tasks = await self.fetch([_text(i) for i in ids])
        return Page(tasks, total, offset, limit, has_more=end < total)

    async def _scan(self, index: str, live: int, filters: Filters, offset: int, limit: int) -> Page:
        prefix = (filters.uuid_prefix or "").lower()
        out: list[Task] = []
        skipped = scanned = 0
        bound = min(live, self.max_scan)
        while scanned < bound and len(out) <= limit:
            ids = [
                _text(i)
                for i in await self.client.zrevrange(
                    index, scanned, min(scanned + BATCH, bound) - 1
                )
            ]
            if not ids:
                break
            scanned += len(ids)
            # A uuid prefix is decided on the id alone, before any record is read.
            ids = [i for i in ids if i.startswith(prefix)] if prefix else ids
            for task in await self.fetch(ids):
                if not filters.matches(task):
                    continue
                if skipped < offset:
                    skipped += 1
                elif len(out) <= limit:
                    out.append(task)
        truncated = scanned < live and len(out) <= limit
        return Page(
            out[:limit],
            None,
            offset,
            limit,
            has_more=len(out) > limit,
            scanned=scanned,
            truncated=truncated,
        )

    async def recent_names(self, sample: int = 200) -> list[str]:
        """Task names among the newest records (for the filter's suggestions)."""
        ids = await self.client.zrevrange(self.keys.index_all, 0, sample - 1)
        # The name field only: whole records (results included) made a page load read
        # megabytes for a list of names.
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(self.keys.record(_text(task_id)), "task_name")
        return sorted({_text(name) for name in await pipe.execute() if name is not None})


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def task_json(task: Task) -> dict[str, Any]:
    """A record as the JSON API returns it (times ISO 8601, UTC)."""
    wait = None
    if task.started_at is not None:
        wait = round((task.started_at - task.created_at).total_seconds(), 6)
    run = task.execution_time
    return {
        "uuid": str(task.uuid),
        "status": task.status,
        "task_name": task.task_name,
        "priority": task.priority,
        "queue": task.queue,
        "args": list(task.args),
        "kwargs": task.kwargs,
        "returning": task.returning,
        "traceback": task.traceback,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "eta": iso(task.eta),
        "wait_seconds": wait,
        "run_seconds": None if run is None else round(run, 6),
        "worker": task.worker,
        "attempt": task.attempt,
        "retry": task.retry,
        "retry_parent_uuid": task.retry_parent_uuid,
        "retry_child_uuid": task.retry_child_uuid,
        "retried_from": task.extra.get("retried_from"),
        "cancel_reason": task.cancel_reason,
        "recoveries": task.recoveries,
        "extra": task.extra,
    }


def pretty(value: Any) -> str:
    """Task data as indented JSON text (escaped by the templates like any other text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def preview(value: Any, width: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= width else text[: width - 1] + "…"
