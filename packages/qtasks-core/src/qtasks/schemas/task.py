"""The task record: what storage keeps about one task, and its flat string mapping.

The mapping (`to_mapping`/`from_mapping`) is the one storage format every storage shares: a flat
`dict[str, str]` that maps onto a Redis hash as well as onto a Python dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from uuid import UUID

from qtasks.enums import STATUS_NEW
from qtasks.schemas.envelope import Envelope, dumps

if TYPE_CHECKING:
    from qtasks.apps.base import BaseQueueTasks


def utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


@dataclass(eq=False)
class Task:
    """One task's record, as `add_task`, `get` and result waits return it.

    `returning` is the JSON-decoded result; `traceback` the formatted error. `started_at` and
    `finished_at` give the execution time; `worker` names the worker that ran it. Extras given at
    enqueue (and by plugins) are in `extra` and readable as attributes (`task.acme`).
    """

    status: str
    uuid: UUID
    priority: int
    task_name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    updated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    returning: Any = None
    traceback: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    queue: str = "default"
    eta: datetime | None = None
    attempt: int = 0
    retry: int | None = None
    retry_child_uuid: str | None = None
    retry_parent_uuid: str | None = None
    cancel_reason: str | None = None
    recoveries: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    _app: BaseQueueTasks | None = field(default=None, repr=False)
    _returning_json: str | None = field(default=None, repr=False)
    """`returning` already encoded (by the executor), so the final write does not encode twice."""
    _id_text: tuple[UUID, str] | None = field(default=None, repr=False)
    """`(uuid, its text)` when the record was made from an envelope's id: formatting a UUID
    costs about a microsecond per record write. Used only while `uuid` is that object."""

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: extras read as attributes, as in qtasks 1.7.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.__dict__["extra"][name]
        except KeyError:
            raise AttributeError(f"Task has no field or extra {name!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return to_mapping(self) == to_mapping(other)

    __hash__ = None  # type: ignore[assignment]  # mutable record

    @property
    def execution_time(self) -> float | None:
        """Seconds between start and finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def is_final(self) -> bool:
        return self.status in ("success", "error", "cancel")

    def wait_result(self, timeout: float = 100) -> Task | None:
        """Block until this task (following retries) is final; `None` on timeout."""
        app = self._require_app()
        return app._wait_sync(str(self.uuid), timeout)

    async def wait_result_async(self, timeout: float = 100) -> Task | None:
        """Await this task's final record (following retries); `None` on timeout."""
        app = self._require_app()
        return await app._wait_async(str(self.uuid), timeout)

    def _require_app(self) -> BaseQueueTasks:
        if self._app is None:
            raise RuntimeError("this Task was not produced by an app; use app.get(uuid)")
        return self._app

    def evolve(self, **changes: Any) -> Task:
        # A shallow copy with the changes, as `dataclasses.replace` (no field has an __init__
        # side effect) without building every field again: this runs once per task.
        for name in changes:
            if name not in _FIELDS:
                raise TypeError(f"Task has no field {name!r}")
        copy = object.__new__(Task)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy


_SCALARS = (
    "worker",
    "queue",
    "traceback",
    "retry_child_uuid",
    "retry_parent_uuid",
    "cancel_reason",
)
_TIMES = ("created_at", "updated_at", "started_at", "finished_at", "eta")
_INTS = ("attempt", "recoveries")
FIELD_NAMES = frozenset(f.name for f in fields(Task) if not f.name.startswith("_"))
_FIELDS = frozenset(f.name for f in fields(Task))


def to_mapping(task: Task) -> dict[str, str]:
    """A record as a flat string mapping. None fields are left out, and so are empty `args`
    and `kwargs` and a zero `attempt` and `recoveries`, which `from_mapping` reads back as
    those defaults: most records are of first runs of tasks without arguments, and each field
    costs Redis a listpack entry on every write."""
    fields = task.__dict__  # one dict lookup per field instead of an attribute walk
    out: dict[str, str] = {
        "status": str(fields["status"]),
        "uuid": id_text(task),
        "priority": str(fields["priority"]),
        "task_name": fields["task_name"],
    }
    if fields["args"]:
        out["args"] = dumps(list(fields["args"]), "args")
    if fields["kwargs"]:
        out["kwargs"] = dumps(fields["kwargs"], "kwargs")
    if fields["attempt"]:
        out["attempt"] = str(fields["attempt"])
    if fields["recoveries"]:
        out["recoveries"] = str(fields["recoveries"])
    if fields["_returning_json"] is not None:
        out["returning"] = fields["_returning_json"]
    elif fields["returning"] is not None:
        out["returning"] = dumps(fields["returning"], f"result of task {task.task_name!r}")
    if fields["retry"] is not None:
        out["retry"] = str(fields["retry"])
    if fields["extra"]:
        out["extra"] = dumps(fields["extra"], "extra")
    for name in _TIMES:
        value = fields[name]
        if value is not None:
            out[name] = repr(value.timestamp())
    for name in _SCALARS:
        value = fields[name]
        if value is not None:
            text = str(value)
            out[name] = text if text.isascii() else storable_text(text)
    return out


def storable_text(text: str) -> str:
    """Free text (a traceback, a cancel reason) as a store can take it: a lone surrogate, which
    UTF-8 refuses (an exception message may carry one from `os.fsdecode`), becomes its escape,
    so that the final write is not refused for its traceback."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def stored_id(uuid: object) -> str | None:
    """A task id as text, or None when no task can have it: text UTF-8 refuses (a lone
    surrogate, as `os.fsdecode` makes of a command line's undecodable bytes) is never stored,
    and a store's client would refuse to send it."""
    text = str(uuid)
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return None
    return text


def id_text(task: Task) -> str:
    """`str(task.uuid)`, from the text it was made from when that is known."""
    known = task._id_text
    if known is not None and known[0] is task.uuid:
        return known[1]
    return str(task.uuid)


def from_mapping(mapping: dict[str, str], app: BaseQueueTasks | None = None) -> Task:
    """The inverse of `to_mapping`; unknown keys become extras (records of other versions)."""
    known = {
        "status",
        "uuid",
        "priority",
        "task_name",
        "args",
        "kwargs",
        "returning",
        "retry",
        "extra",
        *_TIMES,
        *_SCALARS,
        *_INTS,
    }
    extra: dict[str, Any] = json.loads(mapping["extra"]) if "extra" in mapping else {}
    for key, value in mapping.items():
        if key not in known:
            extra[key] = value
    times = {name: utc(float(mapping[name])) if name in mapping else None for name in _TIMES}
    return Task(
        status=mapping["status"],
        uuid=UUID(mapping["uuid"]),
        priority=int(mapping.get("priority", 0)),
        task_name=mapping["task_name"],
        args=tuple(json.loads(mapping.get("args", "[]"))),
        kwargs=json.loads(mapping.get("kwargs", "{}")),
        created_at=times["created_at"] or datetime.now(timezone.utc),
        updated_at=times["updated_at"] or datetime.now(timezone.utc),
        started_at=times["started_at"],
        finished_at=times["finished_at"],
        eta=times["eta"],
        returning=json.loads(mapping["returning"]) if "returning" in mapping else None,
        traceback=mapping.get("traceback"),
        worker=mapping.get("worker"),
        queue=mapping.get("queue", "default"),
        attempt=int(mapping.get("attempt", 0)),
        retry=int(mapping["retry"]) if "retry" in mapping else None,
        retry_child_uuid=mapping.get("retry_child_uuid"),
        retry_parent_uuid=mapping.get("retry_parent_uuid"),
        cancel_reason=mapping.get("cancel_reason"),
        recoveries=int(mapping.get("recoveries", 0)),
        extra=extra,
        _app=app,
    )


def new_record(envelope: Envelope) -> Task:
    """The `new` record written beside a freshly enqueued envelope."""
    created = utc(envelope.created_at) or datetime.now(timezone.utc)
    uuid = envelope.made_uuid or UUID(envelope.id)
    return Task(
        status=STATUS_NEW,
        uuid=uuid,
        priority=envelope.priority,
        task_name=envelope.task,
        args=tuple(envelope.args),
        kwargs=dict(envelope.kwargs),
        created_at=created,
        updated_at=created,
        queue=envelope.queue,
        eta=utc(envelope.eta),
        attempt=envelope.attempt,
        retry=envelope.retry,
        retry_parent_uuid=envelope.parent,
        extra=dict(envelope.extra),
        _id_text=(uuid, envelope.id),
    )
