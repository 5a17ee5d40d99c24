"""Retries as a plugin on `worker_task_error_retry`.

A failed attempt with retries left becomes status `retry` pointing at a new task (the next
attempt), enqueued at once or after the task's backoff. The child's id is derived from the
parent's, and enqueue is idempotent, so a worker that crashes after enqueueing the child and is
run again does not create a second child.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from typing import Any

from qtasks._drive import Flow, drive
from qtasks.hookspecs import hookimpl
from qtasks.schemas.envelope import Envelope
from qtasks.schemas.task import Task

_NAMESPACE = uuidlib.UUID("6f1f2f58-9d7e-4c55-a1b6-6f0b1c1f3a01")


def child_id(parent: str, attempt: int) -> str:
    return str(uuidlib.uuid5(_NAMESPACE, f"{parent}:retry:{attempt}"))


class RetryPlugin:
    @hookimpl
    def worker_task_error_retry(
        self, broker: Any, task_func: Any, task_broker: Envelope, model: Task
    ) -> Any:
        return drive(broker, self._retry_flow(broker, task_func, task_broker, model))

    def _retry_flow(
        self, broker: Any, task_func: Any, env: Envelope, model: Task
    ) -> Flow[dict[str, Any]]:
        attempt = env.attempt + 1
        left = (env.retry if env.retry is not None else task_func.retry) - 1
        delay = task_func.backoff(attempt)
        child = Envelope(
            id=child_id(env.id, attempt),
            task=env.task,
            args=env.args,
            kwargs=env.kwargs,
            priority=env.priority,
            queue=env.queue,
            eta=time.time() + delay if delay else None,
            created_at=time.time(),
            attempt=attempt,
            retry=left,
            parent=env.id,
            headers=env.headers,
            extra=env.extra,
        )
        yield from broker._add_many_flow([child])
        return {"model": model.evolve(status="retry", retry_child_uuid=child.id, retry=left + 1)}
