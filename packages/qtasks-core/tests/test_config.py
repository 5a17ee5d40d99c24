"""QueueConfig: defaults, validation with clear errors, QTASKS_* overrides, subscribers."""

from __future__ import annotations

from typing import Any

import pytest

from qtasks.configs import QueueConfig
from qtasks.exc import ConfigError


def test_defaults_match_the_original() -> None:
    config = QueueConfig()
    assert config.max_tasks_process == 10
    assert config.running_older_tasks is False
    assert config.delete_finished_tasks is False
    assert config.task_default_priority == 0
    assert config.result_statuses_end == ["success", "error", "cancel"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_tasks_process", 0, "at least 1"),
        ("max_tasks_process", "10", "must be int"),
        ("lease_timeout", -1.0, "positive"),
        ("running_older_tasks", "yes", "must be bool"),
        ("result_statuses_end", "success", "must be list"),
        ("max_result_bytes", 512 * 1024 * 1024 + 1, "from 1024 to 536870912"),
        ("max_result_bytes", 1023, "from 1024 to 536870912"),
    ],
)
def test_wrong_values_fail_where_set(field: str, value: Any, message: str) -> None:
    config = QueueConfig()
    with pytest.raises(ConfigError, match=message):
        setattr(config, field, value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("heartbeat_interval", 60.0, "below config.lease_timeout"),
        ("block_timeout", 9.0, "below config.socket_timeout"),
    ],
)
def test_relations_are_checked_before_start(field: str, value: Any, message: str) -> None:
    from qtasks import QueueTasks

    app = QueueTasks(name=f"cfg-{field}", broker_url="memory://")
    setattr(app.config, field, value)  # any order of assignments is fine...
    with pytest.raises(ConfigError, match=message):
        app.start()  # ...but the app refuses to start with an inconsistent config
    assert not app.starter.started


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_MAX_TASKS_PROCESS", "3")
    monkeypatch.setenv("QTASKS_LEASE_TIMEOUT", "2.5")
    monkeypatch.setenv("QTASKS_HEARTBEAT_INTERVAL", "0.5")
    monkeypatch.setenv("QTASKS_RUNNING_OLDER_TASKS", "yes")
    monkeypatch.setenv("QTASKS_QUEUES", "high, low")
    config = QueueConfig()
    assert config.max_tasks_process == 3
    assert config.lease_timeout == 2.5
    assert config.running_older_tasks is True
    assert config.queues == ["high", "low"]


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_MAX_TASKS_PROCESS", "many")
    with pytest.raises(ConfigError, match="QTASKS_MAX_TASKS_PROCESS"):
        QueueConfig()


def test_subscribers_and_dynamic_fields() -> None:
    config = QueueConfig()
    seen: list[tuple[str, Any]] = []
    config.subscribe(lambda cfg, key, value: seen.append((key, value)))
    config.max_tasks_process = 4
    config.my_setting = "x"  # type: ignore[attr-defined]
    assert seen == [("max_tasks_process", 4), ("my_setting", "x")]
    assert config.dynamic_fields == {"my_setting": "x"}
