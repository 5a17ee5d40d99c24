"""Failed tasks as Sentry events: once, with tags and a context; the retry policy."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sentry_sdk

from qtasks import hookimpl
from qtasks.sentry import SentryPlugin
from qtasks.testing.harness import Harness

SentryInit = Any  # the conftest fixture's type


def errors(transport: Any) -> list[dict[str, Any]]:
    return [e for e in transport.events() if e.get("level") == "error" and "exception" in e]


# The plugin enters a task's scopes through sentry-sdk's context variables, or through
# `sentry_sdk.isolation_scope()` when a sentry-sdk lacks them: both ways give the same event.
@pytest.mark.parametrize("scope_vars", ["context variables", "isolation_scope()"])
async def test_failing_task_is_one_event_with_tags_and_context(
    harness: Harness, sentry_init: SentryInit, scope_vars: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if scope_vars == "isolation_scope()":
        monkeypatch.setattr("qtasks.sentry.plugin._SCOPE_VARS", None)
    transport = sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="charge", priority=3, queue="default")
    def charge(customer: str, amount: int) -> None:
        raise ValueError(f"card declined for {amount}")

    await harness.start()
    with sentry_sdk.start_transaction(name="checkout") as request:
        queued = await harness.add_task("charge", "cus_1", 99)
    final = await harness.call("wait", queued.uuid, 5)
    assert final.status == "error"
    await transport.wait_async(errors)
    await harness.stop()

    (event,) = errors(transport)
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ValueError" and exception["value"] == "card declined for 99"
    assert exception["mechanism"] == {"type": "qtasks", "handled": False}
    assert event["tags"] == {
        "qtasks.task_name": "charge",
        "qtasks.task_id": str(queued.uuid),
        "qtasks.queue": "default",
        "qtasks.priority": "3",
        "qtasks.attempt": "0",
    }
    context = event["contexts"]["qtasks"]
    assert context["task_name"] == "charge" and context["task_id"] == str(queued.uuid)
    assert context["priority"] == 3 and context["attempt"] == 0
    assert context["worker"] == final.worker
    # Arguments are data about users: filtered unless the client may send PII.
    assert context["arguments"] == "[Filtered]"
    assert event["transaction"] == "charge"
    # The error belongs to the producer's trace and to the task's processing span.
    trace = event["contexts"]["trace"]
    assert trace["trace_id"] == request.trace_id and trace["op"] == "queue.process"


@pytest.mark.filterwarnings("ignore:The send_default_pii option is deprecated")
async def test_arguments_with_pii_are_scrubbed_by_name(
    harness: Harness, sentry_init: SentryInit
) -> None:
    transport = sentry_init(send_default_pii=True)
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="login")
    def login(
        user: str, password: str, options: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        raise PermissionError("no")

    await harness.start()
    queued = await harness.add_task(
        "login", "ada", "hunter2", options={"token": "t0k", "db": {"secret": "s3"}}, api_key="k3y"
    )
    assert (await harness.call("wait", queued.uuid, 5)).status == "error"
    await transport.wait_async(errors)

    (event,) = errors(transport)
    arguments = event["contexts"]["qtasks"]["arguments"]
    assert arguments["user"] == "ada"
    # The client's event scrubber (its default denylist) applies to the parameter names, and to
    # the keys of `**kwargs` and of dict arguments at any depth (before, those were sent).
    assert arguments["password"] != "hunter2"
    assert arguments["options"]["token"] != "t0k" and arguments["options"]["db"]["secret"] != "s3"
    assert arguments["extra"]["api_key"] != "k3y"
    for secret in ("hunter2", "t0k", "s3", "k3y"):
        assert secret not in repr(event["contexts"]), secret


async def test_succeeding_task_sends_no_event(harness: Harness, sentry_init: SentryInit) -> None:
    transport = sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="fine")
    def fine() -> int:
        return 1

    await harness.start()
    queued = await harness.add_task("fine")
    assert (await harness.call("wait", queued.uuid, 5)).status == "success"
    await harness.stop()  # every trigger of that execution has run
    assert transport.events() == []
    assert [t["transaction"] for t in transport.transactions()] == ["fine"]


async def test_retried_failure_is_reported_once_at_the_last_attempt(
    harness: Harness, sentry_init: SentryInit
) -> None:
    transport = sentry_init()
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="flaky", retry=2)
    def flaky() -> None:
        raise ConnectionError("down")

    await harness.start()
    queued = await harness.add_task("flaky")
    final = await harness.call("wait", queued.uuid, 5)
    assert final.status == "error" and final.attempt == 2
    await transport.wait_async(errors)
    await harness.stop()

    (event,) = errors(transport)
    assert event["tags"]["qtasks.attempt"] == "2"
    assert event["contexts"]["qtasks"]["retries_left"] == 0


async def test_report_retries_reports_every_attempt(
    harness: Harness, sentry_init: SentryInit
) -> None:
    transport = sentry_init()
    harness.app.add_plugin(SentryPlugin(report_retries=True))

    @harness.task(name="flaky", retry=2)
    def flaky() -> None:
        raise ConnectionError("down")

    await harness.start()
    queued = await harness.add_task("flaky")
    assert (await harness.call("wait", queued.uuid, 5)).status == "error"
    await transport.wait_async(lambda t: len(errors(t)) == 3)
    await harness.stop()
    assert sorted(e["tags"]["qtasks.attempt"] for e in errors(transport)) == ["0", "1", "2"]


async def test_error_not_matching_retry_on_exc_is_final_and_reported(
    harness: Harness, sentry_init: SentryInit
) -> None:
    transport = sentry_init()
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="picky", retry=3, retry_on_exc=[ConnectionError])
    def picky() -> None:
        raise TypeError("not retried")

    await harness.start()
    queued = await harness.add_task("picky")
    assert (await harness.call("wait", queued.uuid, 5)).status == "error"
    await transport.wait_async(errors)
    (event,) = errors(transport)
    assert event["tags"]["qtasks.attempt"] == "0"


async def test_timeouts_are_grouped_per_task(harness: Harness, sentry_init: SentryInit) -> None:
    transport = sentry_init()
    harness.app.add_plugin(SentryPlugin())
    release = threading.Event()

    @harness.task(name="slow", max_time=0.05)
    def slow() -> None:
        release.wait(5)  # outlives max_time; set below so the thread does not linger

    await harness.start()
    try:
        queued = await harness.add_task("slow")
        assert (await harness.call("wait", queued.uuid, 5)).status == "error"
        await transport.wait_async(errors)
    finally:
        release.set()
    (event,) = errors(transport)
    assert event["fingerprint"] == ["qtasks", "TaskTimeoutError", "slow"]


class HeaderProbe:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    @hookimpl
    def worker_execute_before(self, task_broker: Any) -> None:
        self.headers.append(dict(task_broker.headers))


async def test_without_a_client_nothing_is_added(harness: Harness) -> None:
    probe = HeaderProbe()
    harness.app.add_plugin(SentryPlugin())
    harness.app.add_plugin(probe)

    @harness.task(name="noop")
    def noop() -> None:
        return None

    await harness.start()
    queued = await harness.add_task("noop")
    assert (await harness.call("wait", queued.uuid, 5)).status == "success"
    assert probe.headers == [{}]


def test_report_retries_must_be_a_bool() -> None:
    from qtasks.sentry import QtasksIntegration

    for make in (SentryPlugin, QtasksIntegration):
        with pytest.raises(TypeError, match="report_retries must be a bool, not 'no'"):
            make(report_retries="no")  # type: ignore[arg-type]
