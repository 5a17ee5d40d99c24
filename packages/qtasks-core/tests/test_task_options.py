"""`@app.task(...)` options are checked when the task is registered, not when it runs."""

from __future__ import annotations

from typing import Any

import pytest

from qtasks import QueueTasks
from qtasks.exc import TaskOptionError

BAD: list[tuple[dict[str, Any], str]] = [
    ({"priority": "high"}, "priority must be an int"),
    ({"queue": ""}, "queue must not be empty"),
    ({"retry": "3"}, "retry must be an int"),
    ({"retry": 1.5}, "retry must be an int"),
    ({"retry": -1}, "retry must be an int, 0 or more"),
    ({"max_time": "5"}, "max_time must be a number"),
    ({"max_time": 0}, "max_time must be finite and positive"),
    ({"max_time": float("nan")}, "max_time must be finite"),
    ({"retry_backoff": -1}, "retry_backoff must be finite and 0 or more"),
    ({"retry_backoff_factor": 0}, "retry_backoff_factor must be finite and positive"),
    ({"retry_backoff_max": "600"}, "retry_backoff_max must be a number"),
    ({"retry_jitter": "yes"}, "retry_jitter must be a bool"),
    ({"echo": "yes"}, "echo must be a bool"),
    ({"retry_on_exc": "ValueError"}, "retry_on_exc must be exception classes"),
    ({"retry_on_exc": [ValueError, 5]}, "retry_on_exc must be exception classes"),
    ({"decode": "json"}, "decode must be callable"),
    ({"executor": "fast"}, "executor must be a class"),
    ({"middlewares_before": "m"}, "middlewares_before must be a list"),
    ({"tags": "a"}, "tags must be a list of str"),
    ({"description": 5}, "description must be a str"),
    ({"name": 5}, "a task name must be a non-empty str"),
]


@pytest.mark.parametrize(("options", "message"), BAD)
def test_a_bad_option_is_refused_at_registration(options: dict[str, Any], message: str) -> None:
    app = QueueTasks(broker_url="memory://")

    def job() -> None: ...

    with pytest.raises(TaskOptionError, match=message):
        app.task(**{"name": "job", **options})(job)
    assert app.tasks == {}


def test_good_options_are_kept_and_normalised() -> None:
    app = QueueTasks(broker_url="memory://")

    @app.task(
        name="job", retry=2, max_time=5, retry_backoff=1, retry_on_exc=ValueError, tags=("a",)
    )
    def job() -> None: ...

    definition = app.tasks["job"]
    assert (definition.retry, definition.max_time, definition.retry_backoff) == (2, 5.0, 1.0)
    assert definition.retry_on_exc == (ValueError,)
