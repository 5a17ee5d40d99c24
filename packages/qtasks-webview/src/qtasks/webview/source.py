"""The dashboard's view of one app: a producer-only asyncio app on the app's Redis.

No task of the user's app is imported or registered here: `QueueTasks(name, broker=...)` with
no tasks gives records, stats, dead letters, the GlobalConfig (live workers, timer schedules)
and the admin actions (cancel, retry, purge), which is all the dashboard needs. Every method
returns plain JSON-ready data; the pages and the JSON API render the same dictionaries.
"""

from __future__ import annotations

import inspect
import time
from datetime import datetime, timezone
from typing import Any

from qtasks.schemas.task import Task
from qtasks.webview.records import Filters, Page, RecordReader, iso, task_json
from qtasks.webview.settings import Target

WORKERS = "workers"
"""GlobalConfig name of the live-worker registry (qtasks.configs.base.WORKERS_NAME)."""
SCHEDULES = "schedules"
"""GlobalConfig name of qtasks-timer's schedule records (qtasks.timer.schedule.SCHEDULES)."""
STATUSES = ("new", "process", "success", "error", "cancel", "retry")
CHAIN_LIMIT = 25


def build_app(target: Target) -> Any:
    """The producer-only asyncio app for `target` (Redis only: the dashboard reads its keys)."""
    from qtasks.asyncio import QueueTasks
    from qtasks.redis import AsyncRedisBroker, AsyncRedisGlobalConfig

    broker = AsyncRedisBroker(name=target.name, url=target.url, prefix=target.prefix)
    global_config = None
    if target.config_name is not None:
        global_config = AsyncRedisGlobalConfig(
            name=target.name,
            prefix=target.prefix,
            config_name=target.config_name,
            connection=broker.connection,
        )
    return QueueTasks(name=target.name, broker=broker, global_config=global_config)


def _epoch(value: Any) -> str | None:
    try:
        return None if value is None else iso(datetime.fromtimestamp(float(value), timezone.utc))
    except (TypeError, ValueError, OverflowError):
        return None


class Source:
    def __init__(self, target: Target, app: Any = None, max_scan: int = 10_000) -> None:
        self.name = target.name
        self.app = app if app is not None else build_app(target)
        self.records = RecordReader(self.app.broker.storage, max_scan=max_scan)

    async def close(self) -> None:
        """Close the Redis connections. Not `storage.stop()`: the GlobalConfig's stop would
        delete the app's "running" status, which belongs to its workers."""
        closing = self.app.broker.connection.release()
        if inspect.isawaitable(closing):
            await closing

    # -- reads -----------------------------------------------------------------------------
    async def workers(self) -> list[dict[str, Any]]:
        registry = self.app.broker.storage.global_config
        found = await registry.get_all(WORKERS) if registry is not None else {}
        now = time.time()
        out = []
        for worker_id, info in sorted(found.items()):
            if not isinstance(info, dict):
                continue
            beat = info.get("heartbeat")
            age = round(now - float(beat), 3) if isinstance(beat, int | float) else None
            out.append(
                {
                    "id": str(info.get("id", worker_id)),
                    "host": info.get("host"),
                    "pid": info.get("pid"),
                    "flavour": info.get("flavour"),
                    "started": _epoch(info.get("started")),
                    "heartbeat": _epoch(beat),
                    "heartbeat_age": age,
                    "in_flight": info.get("in_flight"),
                    "running": info.get("running"),
                    "processed": info.get("processed"),
                    "concurrency": info.get("concurrency"),
                    "queues": info.get("queues"),
                }
            )
        return out

    async def overview(self) -> dict[str, Any]:
        stats = await self.app.broker.stats()
        counts = await self.app.broker.storage.counts()
        per_minute = [int(n) for n in stats.get("finished_per_minute", [])] or [0] * 60
        queues = {
            name: {**info, "total": int(info["ready"]) + int(info["delayed"])}
            for name, info in sorted(stats["queues"].items())
        }
        return {
            "app": self.name,
            "generated_at": iso(datetime.now(timezone.utc)),
            "statuses": {s: int(counts.get(s, 0)) for s in STATUSES},
            "queued": sum(q["total"] for q in queues.values()),
            "queues": queues,
            "processing": int(stats["processing"]),
            "dead": int(stats["dead"]),
            "finished_last_minute": int(stats["finished_last_minute"]),
            "throughput": {
                "per_minute": per_minute,
                "last_hour": sum(per_minute),
                "peak": max(per_minute),
            },
            "workers": await self.workers(),
        }

    async def tasks(self, filters: Filters, offset: int, limit: int) -> Page:
        return await self.records.page(filters, offset, limit)

    async def task(self, uuid: str) -> Task | None:
        task: Task | None = await self.app.get(uuid)
        return task

    async def chain(self, task: Task) -> list[dict[str, Any]]:
        """The retry chain through `task`, oldest first: plugin retries link both ways
        (retry_parent_uuid / retry_child_uuid), a manual retry points back (retried_from)."""
        back: list[Task] = []
        seen = {str(task.uuid)}
        current = task
        while len(back) < CHAIN_LIMIT:
            parent = current.retry_parent_uuid or current.extra.get("retried_from")
            if not parent or parent in seen:
                break
            found = await self.task(str(parent))
            if found is None:
                break
            seen.add(parent)
            back.append(found)
            current = found
        forward: list[Task] = []
        current = task
        while len(forward) < CHAIN_LIMIT and current.retry_child_uuid:
            child = current.retry_child_uuid
            if child in seen:
                break
            found = await self.task(child)
            if found is None:
                break
            seen.add(child)
            forward.append(found)
            current = found
        if not back and not forward:
            return []
        return [
            {
                "uuid": str(t.uuid),
                "status": t.status,
                "attempt": t.attempt,
                "created_at": iso(t.created_at),
                "current": t is task,
            }
            for t in [*reversed(back), task, *forward]
        ]

    async def task_detail(self, uuid: str) -> dict[str, Any] | None:
        task = await self.task(uuid)
        if task is None:
            return None
        return {
            **task_json(task),
            "chain": await self.chain(task),
            "final": task.status in ("success", "error", "cancel", "retry"),
        }

    async def dead(self, offset: int, limit: int) -> dict[str, Any]:
        stats = await self.app.broker.stats()
        entries = await self.app.broker.list_dead(limit, offset)
        return {
            "total": int(stats["dead"]),
            "offset": offset,
            "limit": limit,
            "entries": [
                {
                    "uuid": e.uuid,
                    "task_name": e.task_name,
                    "reason": e.reason,
                    "sample": e.sample,
                    "at": _epoch(e.at),
                }
                for e in entries
            ],
        }

    async def schedules(self) -> list[dict[str, Any]]:
        registry = self.app.broker.storage.global_config
        found = await registry.get_all(SCHEDULES) if registry is not None else {}
        out = []
        for schedule_id, record in sorted(found.items()):
            if not isinstance(record, dict):
                continue
            out.append(
                {
                    "id": str(record.get("id", schedule_id)),
                    "task_name": record.get("task_name"),
                    "trigger": record.get("trigger"),
                    "next_run_time": _epoch(record.get("next_run_time")),
                    "last_run": _epoch(record.get("last_run")),
                    "last_task_uuid": record.get("last_task_uuid"),
                    "args": record.get("args") or [],
                    "kwargs": record.get("kwargs") or {},
                    "priority": record.get("priority"),
                    "misfire_grace_time": record.get("misfire_grace_time"),
                    "coalesce": record.get("coalesce", True),
                    "timer": record.get("timer"),
                }
            )
        return out

    # -- actions ---------------------------------------------------------------------------
    async def cancel(self, uuid: str, reason: str | None) -> str:
        return str(await self.app.cancel(uuid, reason or "cancelled from the web view"))

    async def retry(self, uuid: str) -> str | None:
        """Run a failed/cancelled task again (a new task) or move a dead letter back to its
        queue (the same id); the uuid to follow, or None when there is nothing to retry."""
        task = await self.app.retry(uuid)
        return None if task is None else str(task.uuid)

    async def purge_dead(self, uuid: str | None) -> int:
        return int(await self.app.broker.purge_dead(uuid))
