"""How `QueueTasks()` picks its components: passed ones first, then URLs, then what is installed.

Broker: the one passed; else the one whose registered URL schemes match `broker_url`; else
`QTASKS_BROKER_URL`; else Redis when a broker for `redis://` is installed (the seed's default);
else the in-memory components. `storage_url` picks the storage the same way.
"""

from __future__ import annotations

import os
from typing import Any

from qtasks import _discovery
from qtasks.exc import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def check_app(name: Any, broker_url: Any, storage_url: Any) -> None:
    """The app's name (every key and channel of its components is prefixed by it) and URLs, or
    `ConfigError`: a bad one would otherwise fail at the first call, untyped."""
    if type(name) is not str or not name:
        raise ConfigError(
            f"the app name must be a non-empty str, not {type(name).__name__} {name!r}"
        )
    try:
        name.encode()
    except UnicodeEncodeError:
        raise ConfigError(f"the app name {name!r} is not valid UTF-8 text") from None
    if not name.isprintable():
        raise ConfigError(f"the app name {name!r} has a control character")
    for label, url in (("broker_url", broker_url), ("storage_url", storage_url)):
        if url is not None and not isinstance(url, str):
            raise ConfigError(f"{label} must be a str, not {type(url).__name__}")


def choose_broker_url(broker_url: str | None) -> str:
    if broker_url:
        return broker_url
    env_url = os.environ.get("QTASKS_BROKER_URL")
    if env_url:
        return env_url
    if _discovery.has_scheme("qtasks.brokers", "redis"):
        return DEFAULT_REDIS_URL
    return "memory://"


def build_broker(
    name: str, is_async: bool, broker_url: str | None, storage_url: str | None, global_config: Any
) -> Any:
    url = choose_broker_url(broker_url)
    broker_cls = _discovery.component_for_url("qtasks.brokers", url, is_async)
    storage = None
    if storage_url:
        storage_cls = _discovery.component_for_url("qtasks.storages", storage_url, is_async)
        storage = storage_cls(name=name, url=storage_url, global_config=global_config)
    return broker_cls(name=name, url=url, storage=storage)


def build_worker(name: str, is_async: bool, broker: Any) -> Any:
    worker_cls = _discovery.load(
        "qtasks.workers", "AsyncWorker" if is_async else "SyncThreadWorker"
    )
    return worker_cls(name=name, broker=broker)


def build_starter(name: str, is_async: bool, broker: Any, worker: Any) -> Any:
    starter_cls = _discovery.load("qtasks.starters", "AsyncStarter" if is_async else "SyncStarter")
    return starter_cls(name=name, broker=broker, worker=worker)


def check_flavour(app_is_async: bool, **components: Any) -> None:
    flavour = "asyncio" if app_is_async else "sync"
    for role, component in components.items():
        if component is not None and bool(getattr(component, "is_async", False)) != app_is_async:
            raise ConfigError(
                f"{role} {type(component).__name__} does not fit the {flavour} QueueTasks; use "
                f"{'qtasks.asyncio.QueueTasks' if not app_is_async else 'qtasks.QueueTasks'} "
                "or the other flavour of the component"
            )
