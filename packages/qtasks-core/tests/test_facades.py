"""Facades resolve installed components through entry points; missing ones say what to install."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from qtasks import _discovery
from qtasks.exc import ComponentNotFoundError


def test_core_components_resolve_through_the_facades() -> None:
    from qtasks.brokers import AsyncMemoryBroker, SyncMemoryBroker
    from qtasks.configs import AsyncMemoryGlobalConfig
    from qtasks.starters import AsyncStarter, SyncStarter
    from qtasks.storages import SyncMemoryStorage
    from qtasks.workers import AsyncWorker, SyncThreadWorker

    assert AsyncMemoryBroker.is_async and not SyncMemoryBroker.is_async
    assert {
        AsyncMemoryGlobalConfig,
        SyncMemoryStorage,
        AsyncWorker,
        SyncThreadWorker,
        AsyncStarter,
        SyncStarter,
    }
    brokers = importlib.import_module("qtasks.brokers")
    assert {"AsyncMemoryBroker", "SyncMemoryBroker", "BaseBroker"} <= set(dir(brokers))


def test_missing_first_party_name_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _discovery._load.__wrapped__

    def without_redis(group: str, name: str) -> object:
        if "Redis" in name:
            raise KeyError(name)
        return real(group, name)

    monkeypatch.setattr(_discovery, "_load", without_redis)
    with pytest.raises(ImportError, match="pip install qtasks-redis"):
        from qtasks.brokers import AsyncRedisBroker  # noqa: F401
    with pytest.raises(ImportError, match="cannot import name"):
        from qtasks.brokers import NoSuchBroker  # noqa: F401


def test_unknown_scheme_lists_installed_schemes() -> None:
    with pytest.raises(ComponentNotFoundError, match=r"kafka:// .*memory://"):
        _discovery.component_for_url("qtasks.brokers", "kafka://host", is_async=True)


def test_app_picks_broker_by_scheme_and_flavour() -> None:
    from qtasks import QueueTasks
    from qtasks.asyncio import QueueTasks as AsyncQueueTasks

    assert type(QueueTasks(broker_url="memory://").broker).__name__ == "SyncMemoryBroker"
    assert type(AsyncQueueTasks(broker_url="memory://").broker).__name__ == "AsyncMemoryBroker"


def test_flavour_mismatch_is_a_clear_error() -> None:
    from qtasks import QueueTasks
    from qtasks.brokers.memory import AsyncMemoryBroker
    from qtasks.exc import ConfigError

    with pytest.raises(ConfigError, match="does not fit the sync QueueTasks"):
        QueueTasks(broker=AsyncMemoryBroker())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("rediss://user:s3cret@h/2", "rediss://user:***@h/2"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        # Neither a port out of range nor an IPv6 host is lost or breaks the redaction.
        ("redis://u:s3cret@h:99999/0", "redis://u:***@h:99999/0"),
        ("rediss://u:s3cret@[::1]:6380/1", "rediss://u:***@[::1]:6380/1"),
    ],
)
def test_urls_are_redacted(url: str, shown: str) -> None:
    assert _discovery.redact_url(url) == shown


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "the app name must be a non-empty str"),
        ({"name": 5}, "the app name must be a non-empty str, not int"),
        ({"name": "jobs\n"}, "has a control character"),
        ({"name": "\udcff"}, "not valid UTF-8 text"),
        ({"broker_url": 5}, "broker_url must be a str, not int"),
        ({"storage_url": b"memory://"}, "storage_url must be a str, not bytes"),
    ],
)
def test_a_bad_app_name_or_url_is_a_config_error(kwargs: dict[str, Any], message: str) -> None:
    # Every key and channel of the app's components is prefixed by its name: a bad one used
    # to fail at the first Redis call, untyped.
    from qtasks import QueueTasks
    from qtasks.exc import ConfigError

    with pytest.raises(ConfigError, match=message):
        QueueTasks(**{"broker_url": "memory://", **kwargs})
