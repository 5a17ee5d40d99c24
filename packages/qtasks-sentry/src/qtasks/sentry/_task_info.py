"""What a Sentry event learns about the task it happened in: tags, a context, the arguments.

Arguments follow the rules of sentry-sdk's own queue integrations (Celery, arq, RQ): sent only
when `data_collection` allows queue data or, without that option, with `send_default_pii`;
otherwise replaced by `[Filtered]`. When sent, they are keyed by parameter name and go through
the client's event scrubber at every depth, so a `password` argument, keyword (`**kwargs`) or
key of a dict argument is scrubbed like a `password` field.
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
    from sentry_sdk._types import Event, Hint

    from qtasks.schemas.envelope import Envelope

CONTEXT = "qtasks"
FILTERED = "[Filtered]"  # sentry-sdk's SENSITIVE_DATA_SUBSTITUTE (a private module in 2.x)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """The task a Sentry event happened in, and the event processor that says so. It keeps the
    envelope (never changed once made: a retry gets a new one) and reads it only when an event
    is made, so an execution without an event pays for this one small object."""

    env: Envelope
    task_func: Any
    worker: str | None

    @classmethod
    def of(cls, env: Envelope, task_func: Any, worker: Any) -> TaskInfo:
        return cls(env, task_func, getattr(worker, "worker_id", None))

    @property
    def name(self) -> str:
        return self.env.task

    def tags(self) -> dict[str, str]:
        env = self.env
        return {
            "qtasks.task_name": env.task,
            "qtasks.task_id": env.id,
            "qtasks.queue": env.queue,
            "qtasks.priority": str(env.priority),
            "qtasks.attempt": str(env.attempt),
        }

    def context(self, options: dict[str, Any]) -> dict[str, Any]:
        env = self.env
        out: dict[str, Any] = {
            "task_name": env.task,
            "task_id": env.id,
            "queue": env.queue,
            "priority": env.priority,
            "attempt": env.attempt,
            "retries_left": env.retry,
            "parent_id": env.parent,
            "worker": self.worker,
        }
        out["arguments"] = self._arguments(options) if _may_send_arguments(options) else FILTERED
        return out

    def _arguments(self, options: dict[str, Any]) -> Any:
        # A copy (JSON by construction): scrubbing replaces values, and a retry's envelope may
        # share these lists and dicts.
        args, kwargs = json.loads(json.dumps([self.env.args, self.env.kwargs], default=repr))
        arguments: dict[str, Any]
        try:
            signature = getattr(self.task_func, "public_signature", None)
            arguments = dict(signature.bind_partial(*args, **kwargs).arguments)  # type: ignore[union-attr]
        except (AttributeError, TypeError):  # no signature, or arguments that do not bind
            arguments = {"args": args, "kwargs": kwargs}
        scrubber = options.get("event_scrubber")
        if scrubber is not None:
            _scrub(scrubber, arguments)
        return arguments

    def __call__(self, event: Event, hint: Hint) -> Event:
        """The event processor of the task's scope: its tags, context and transaction name."""
        with capture_internal_exceptions():
            options = sentry_sdk.get_client().options
            tags = event.setdefault("tags", {})
            for key, value in self.tags().items():
                tags.setdefault(key, value)
            event.setdefault("contexts", {})[CONTEXT] = self.context(options)
            event.setdefault("transaction", self.env.task)
            exc_info = hint.get("exc_info") if hint else None
            if exc_info and isinstance(exc_info[1], TaskTimeoutError):
                # Group timeouts per task, not per the line the task happened to be on.
                event["fingerprint"] = ["qtasks", "TaskTimeoutError", self.env.task]
        return event


def _scrub(scrubber: Any, value: Any) -> None:
    """The client's scrubber on every dict at any depth (its own recursion is off by default):
    a secret may come in `**kwargs` or inside a dict argument as well as in a parameter."""
    if isinstance(value, dict):
        scrubber.scrub_dict(value)
        for item in value.values():
            _scrub(scrubber, item)
    elif isinstance(value, list):
        for item in value:
            _scrub(scrubber, item)


def _may_send_arguments(options: dict[str, Any]) -> bool:
    # `data_collection` arrived in sentry-sdk 2.5x; older versions only know send_default_pii.
    has_data_collection = getattr(sentry_sdk.utils, "has_data_collection_enabled", None)
    if has_data_collection is not None and has_data_collection(options):
        return bool((options.get("data_collection") or {}).get("queues"))
    return should_send_default_pii()
