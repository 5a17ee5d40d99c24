"""Producer spans waiting for the write that gives their task an id.

A producer span starts in `qtasks_add_task_before_broker` (its context goes into the envelope's
headers) but the task's id only exists once the envelope is made, and the only trigger that sees
every successful write, single or bulk, is `broker_add_after`, which gets the new record and no
headers. So a span waits here, in a context variable of the enqueuing thread or asyncio task,
until the record of its task comes by.

Matching: `add_tasks` starts N spans and then writes N records in the same order; an enqueue that
raised (payload too large, broker down) leaves its span behind. A span starts before its
envelope is made (`created_at`, same clock), and after the previous envelope was, so a record
belongs to the newest waiting span of its task name that started no later than the record was
created; the earliest wins a tie (coarse clocks). Older spans still waiting are left over from
failed enqueues and are ended as such.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry.trace import Span

# `Task.created_at` is a datetime (microsecond resolution) made from the envelope's float.
_ROUNDING = 1e-6


@dataclass(frozen=True, slots=True)
class Pending:
    owner: object
    task_name: str
    started: float
    span: Span


# A tuple, replaced and never mutated, so a child asyncio task that inherits this context
# cannot change what its parent sees.
_waiting: ContextVar[tuple[Pending, ...]] = ContextVar("qtasks_otel_pending", default=())


def push(entry: Pending) -> None:
    _waiting.set((*_waiting.get(), entry))


def take(owner: object, task_name: str, created_at: float) -> tuple[Pending | None, list[Pending]]:
    """The span of the record just written, and `owner`'s spans left over from failed enqueues."""
    entries = _waiting.get()
    if not entries:
        return None, []
    best: int | None = None
    for index, entry in enumerate(entries):
        if (
            entry.owner is owner
            and entry.task_name == task_name
            and entry.started <= created_at + _ROUNDING
            and (best is None or entry.started > entries[best].started)
        ):
            best = index
    if best is None:
        return None, []
    stale = [e for e in entries[:best] if e.owner is owner]
    _waiting.set(
        tuple(e for i, e in enumerate(entries) if i > best or (i < best and e.owner is not owner))
    )
    return entries[best], stale
