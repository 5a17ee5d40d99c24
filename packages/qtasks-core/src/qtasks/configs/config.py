"""`QueueConfig`: the app's settings, with `QTASKS_*` environment overrides and validation.

Fields and defaults follow qtasks 1.7; the reliability fields (leases, heartbeats, grace) are new.
Every assignment is type-checked and range-checked, so a wrong value fails where it is set with a
`ConfigError` naming the field, never later inside a worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from qtasks.exc import ConfigError
from qtasks.schemas.envelope import DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_RESULT

Subscriber = Callable[["QueueConfig", str, Any], None]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _positive(value: float) -> bool:
    return value > 0


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_tasks_process": (lambda v: v >= 1, "at least 1"),
    "prefetch": (lambda v: v >= 0, "0 or more"),
    "lease_timeout": (_positive, "positive"),
    "heartbeat_interval": (_positive, "positive"),
    "reaper_interval": (_positive, "positive"),
    "max_recoveries": (lambda v: v >= 0, "0 or more"),
    "shutdown_grace": (lambda v: v >= 0, "0 or more"),
    "result_time_interval": (_positive, "positive"),
    "max_payload_bytes": (lambda v: v >= 1024, "at least 1024"),
    # Redis refuses a value over 512 MiB (its largest bulk string), and only once it is sent.
    "max_result_bytes": (lambda v: 1024 <= v <= 512 * 1024 * 1024, "from 1024 to 536870912"),
    "block_timeout": (_positive, "positive"),
    "socket_timeout": (_positive, "positive"),
    "result_ttl": (lambda v: v is None or v > 0, "positive or None"),
    "global_config_status_ttl": (_positive, "positive"),
    "global_config_status_set_periodic": (_positive, "positive"),
}


@dataclass
class QueueConfig:
    """Settings shared by the app's components.

    Environment variables `QTASKS_<FIELD>` (upper case) override defaults at construction.
    Unknown attributes are accepted as dynamic fields, as in qtasks 1.7, and notify subscribers.
    """

    max_tasks_process: int = 10
    """Tasks one worker process runs at once (its true concurrency)."""
    prefetch: int = 10
    """Tasks claimed beyond free slots, so the next task starts without a round trip. As many
    as the slots by default (Dramatiq prefetches twice its threads, Celery four times): claims
    and write batches then carry about ten tasks each, which cut the worker's CPU per short
    task by a quarter. Lower it when tasks are long and several workers share a queue, so a
    task does not wait behind a busy worker while another one idles."""
    running_older_tasks: bool = False
    """At start, return lapsed leases to the queue at once instead of waiting for the reaper."""
    delete_finished_tasks: bool = False
    """At start, delete finished records (never `new` or `process` ones)."""
    task_default_priority: int = 0
    task_default_decode: Callable[[Any], str] | None = None
    """Result encoder used when a task sets no `decode`; must return a JSON string."""
    global_config_status_ttl: float = 20.0
    global_config_status_set_periodic: float = 17.0
    logs_default_level_server: int = logging.INFO
    logs_default_level_client: int = logging.INFO
    logs_format: str = "%(asctime)s [%(name)s: %(levelname)s] (%(subname)s) %(message)s"
    result_time_interval: float = 1.0
    """Kept for 1.7 compatibility: the longest sleep of a result wait whose storage cannot push."""
    result_statuses_end: list[str] = field(default_factory=lambda: ["success", "error", "cancel"])
    environ_prefix: str = "QTASKS_"
    lease_timeout: float = 30.0
    """Seconds a claimed task stays owned without a heartbeat before the reaper may return it."""
    heartbeat_interval: float = 5.0
    """How often a worker renews its leases; must be well under `lease_timeout`."""
    reaper_interval: float = 5.0
    max_recoveries: int = 3
    """Lease recoveries after which a task is dead-lettered as poison instead of re-run."""
    shutdown_grace: float = 30.0
    """On SIGTERM, seconds running tasks may take to finish before they are handed back."""
    result_ttl: float | None = 86400.0
    """Seconds a finished record is kept (None: forever)."""
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD
    """Largest encoded task (arguments included); a larger one is refused at enqueue."""
    max_result_bytes: int = DEFAULT_MAX_RESULT
    """Largest encoded result; a larger one ends its task as `error` (`ResultTooLargeError`)
    before anything is written. Redis refuses a value over 512 MiB only once the write is sent,
    and a final write shares its round trip with other tasks'."""
    block_timeout: float = 1.0
    """Longest blocking wait on the broker; must stay below `socket_timeout`."""
    socket_timeout: float = 5.0
    enqueue_unknown_tasks: bool = False
    """Allow `add_task` for names this app does not register (a producer of a remote worker).
    An app with no tasks at all is taken to be such a producer."""
    queues: list[str] = field(default_factory=lambda: ["default"])
    """Queues this app's worker consumes, in no particular order (priority decides)."""
    allow_eviction: bool = False
    """Let a worker start on a broker that may evict keys under memory pressure (a Redis
    `maxmemory-policy` other than `noeviction`), with a warning instead of a refusal."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_subscribers", [])
        object.__setattr__(self, "_dynamic", {})
        self._apply_environ()
        self._check_relations()

    # -- validation -------------------------------------------------------------------------
    def __setattr__(self, key: str, value: Any) -> None:
        hints = _hints()
        if key in hints:
            value = _coerce(key, hints[key], value)
            rule = _RULES.get(key)
            if rule is not None and not rule[0](value):
                raise ConfigError(f"config.{key} must be {rule[1]}, got {value!r}")
        elif not key.startswith("_"):
            self.__dict__.setdefault("_dynamic", {})[key] = value
        object.__setattr__(self, key, value)
        if "_subscribers" in self.__dict__ and not key.startswith("_"):
            for callback in self._subscribers:
                callback(self, key, value)

    def validate(self) -> None:
        """Check relations between fields (run at construction and when an app starts, so
        fields can be assigned in any order)."""
        self._check_relations()

    def _check_relations(self) -> None:
        if self.heartbeat_interval >= self.lease_timeout:
            raise ConfigError(
                f"config.heartbeat_interval ({self.heartbeat_interval}) must be below "
                f"config.lease_timeout ({self.lease_timeout})"
            )
        if self.block_timeout >= self.socket_timeout:
            raise ConfigError(
                f"config.block_timeout ({self.block_timeout}) must be below "
                f"config.socket_timeout ({self.socket_timeout}), or idle workers time out"
            )

    def _apply_environ(self) -> None:
        prefix = self.environ_prefix
        hints = _hints()
        for name in hints:
            raw = os.environ.get(f"{prefix}{name.upper()}")
            if raw is not None:
                try:
                    setattr(self, name, _from_env(name, hints[name], raw))
                except ConfigError as exc:
                    raise ConfigError(f"{prefix}{name.upper()}: {exc}") from None

    def subscribe(self, callback: Subscriber) -> None:
        """Call `callback(config, key, value)` after every assignment."""
        self._subscribers.append(callback)

    @property
    def dynamic_fields(self) -> dict[str, Any]:
        return dict(self._dynamic)

    _subscribers: list[Subscriber] = field(default_factory=list, init=False, repr=False)
    _dynamic: dict[str, Any] = field(default_factory=dict, init=False, repr=False)


_HINTS: dict[str, Any] = {}


def _hints() -> dict[str, Any]:
    if not _HINTS:
        resolved = get_type_hints(QueueConfig)
        _HINTS.update(
            {f.name: resolved[f.name] for f in fields(QueueConfig) if not f.name.startswith("_")}
        )
    return _HINTS


def _kind(hint: Any) -> str:
    text = str(hint)
    if "Callable" in text:
        return "callable"
    if hint is bool:
        return "bool"
    if hint is int:
        return "int"
    if hint is float or "float" in text:
        return "float"
    if hint is str:
        return "str"
    if "list" in text:
        return "list"
    return "any"


def _coerce(key: str, hint: Any, value: Any) -> Any:
    kind = _kind(hint)
    optional = "None" in str(hint)
    if value is None and (optional or kind in ("callable", "any")):
        return None
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "list": isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
        "callable": callable(value),
        "any": True,
    }[kind]
    if not ok:
        raise ConfigError(f"config.{key} must be {kind}, got {type(value).__name__} {value!r}")
    if kind == "float":
        return float(value)
    if kind == "list":
        return list(value)
    return value


def _from_env(key: str, hint: Any, raw: str) -> Any:
    kind = _kind(hint)
    text = raw.strip()
    try:
        if kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return None if text.lower() == "none" else float(text)
        if kind == "list":
            return [part.strip() for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"cannot read {raw!r} as {kind} for {key}") from None
    if kind == "callable":
        raise ConfigError(f"{key} cannot be set from the environment")
    return text
