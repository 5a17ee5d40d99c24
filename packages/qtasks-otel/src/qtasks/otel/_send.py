"""`SendSpans`: ends a plugin's producer spans when their records are written.

A separate pluggy object with the one trigger, `broker_add_after`, registered on an app the first
time the plugin makes a recording producer span there: an app without an SDK never pays for
that trigger (every implemented trigger costs the worker a dispatch per task).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Status, StatusCode

from qtasks import hookimpl
from qtasks.otel import _pending
from qtasks.otel import _semconv as sc

if TYPE_CHECKING:
    from qtasks.schemas.task import Task


class SendSpans:
    def __init__(self) -> None:
        self._hosts: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def equip(self, app: Any) -> None:
        """Register on `app` unless already there (cheap when it is: called per enqueue)."""
        host = app.plugins
        if host in self._hosts:
            return
        with self._lock:
            if host not in self._hosts:
                app.add_plugin(self)
                self._hosts.add(host)

    def remove_from(self, app: Any) -> None:
        host = app.plugins
        with self._lock:
            if host in self._hosts:
                host.unregister(self)
                self._hosts.discard(host)

    def push(self, task_name: str, started: float, span: Any) -> None:
        _pending.push(_pending.Pending(self, task_name, started, span))

    @hookimpl
    def broker_add_after(self, model: Task) -> None:
        entry, stale = _pending.take(self, model.task_name, model.created_at.timestamp())
        for left in stale:
            left.span.set_status(Status(StatusCode.ERROR, "enqueue failed: no record written"))
            left.span.end()
        if entry is None:
            return  # a retry the worker enqueued, or a span of another plugin
        span = entry.span
        span.set_attribute(sc.MESSAGING_MESSAGE_ID, str(model.uuid))
        span.set_attribute(sc.MESSAGING_DESTINATION_NAME, model.queue)
        span.update_name(f"{sc.SEND} {model.queue}")
        span.end()
