"""What a Sentry event learns about the task it happened in: tags, a context, the arguments.

Arguments follow the rules of sentry-sdk's own queue integrations (Celery, arq, RQ): sent only
when `data_collection` allows queue data or, without that option, with `send_default_pii`;
otherwise replaced by `[Filtered]`. When sent, they are keyed by parameter name and go through
the client's event scrubber, so a `password` argument is scrubbed like a `password` field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sentry_sdk
import sentry_sdk.utils
from sentry_sdk.scope import should_send_default_pii
from sentry_sdk.utils import capture_internal_exceptions

from qtasks.exc import TaskTimeoutError

if TYPE_CHECKING:
    from sentry_sdk._types import Event, EventProcessor, Hint

    from qtasks.schemas.envelope import Envelope

CONTEXT = "qtasks"
FILTERED = "[Filtered]"  # sentry-sdk's SENSITIVE_DATA_SUBSTITUTE (a private module in 2.x)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    name: str
    task_id: str
    queue: str
    priority: int
    attempt: int
    retries_left: int | None
    parent_id: str | None
    worker: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    signature: Any

    @classmethod
    def of(cls, env: Envelope, task_func: Any, worker: Any) -> TaskInfo:
        return cls(env.task, env.id, env.queue, env.priority, env.attempt, env.retry,
                   env.parent, getattr(worker, "worker_id", None), env.args, env.kwargs,
                   getattr(task_func, "public_signature", None))

    def tags(self) -> dict[str, str]:
        return {"qtasks.task_name": self.name, "qtasks.task_id": self.task_id,
                "qtasks.queue": self.queue, "qtasks.priority": str(self.priority),
                "qtasks.attempt": str(self.attempt)}

    def context(self, options: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"task_name": self.name, "task_id": self.task_id,
                               "queue": self.queue, "priority": self.priority,
                               "attempt": self.attempt, "retries_left": self.retries_left,
                               "parent_id": self.parent_id, "worker": self.worker}
        out["arguments"] = (self._arguments(options) if _may_send_arguments(options)
                            else FILTERED)
        return out

    def _arguments(self, options: dict[str, Any]) -> Any:
        # A copy (JSON by construction): scrubbing replaces values, and a retry's envelope may
        # share these lists and dicts.
        args, kwargs = json.loads(json.dumps([self.args, self.kwargs], default=repr))
        arguments: dict[str, Any]
        try:
            arguments = dict(self.signature.bind_partial(*args, **kwargs).arguments)
        except (AttributeError, TypeError):  # no signature, or arguments that do not bind
            arguments = {"args": args, "kwargs": kwargs}
        scrubber = options.get("event_scrubber")
        if scrubber is not None:
            scrubber.scrub_dict(arguments)
        return arguments


def _may_send_arguments(options: dict[str, Any]) -> bool:
    # `data_collection` arrived in sentry-sdk 2.5x; older versions only know send_default_pii.
    has_data_collection = getattr(sentry_sdk.utils, "has_data_collection_enabled", None)
    if has_data_collection is not None and has_data_collection(options):
        return bool((options.get("data_collection") or {}).get("queues"))
    return should_send_default_pii()


def event_processor(info: TaskInfo) -> EventProcessor:
    def process(event: Event, hint: Hint) -> Event:
        with capture_internal_exceptions():
            options = sentry_sdk.get_client().options
            tags = event.setdefault("tags", {})
            for key, value in info.tags().items():
                tags.setdefault(key, value)
            event.setdefault("contexts", {})[CONTEXT] = info.context(options)
            event.setdefault("transaction", info.name)
            exc_info = hint.get("exc_info") if hint else None
            if exc_info and isinstance(exc_info[1], TaskTimeoutError):
                # Group timeouts per task, not per the line the task happened to be on.
                event["fingerprint"] = ["qtasks", "TaskTimeoutError", info.name]
        return event

    return process
