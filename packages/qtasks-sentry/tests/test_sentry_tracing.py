"""Transactions continuing the producer's trace, trace headers, breadcrumbs, scope isolation."""

from __future__ import annotations

import threading
from typing import Any

import sentry_sdk
from sentry_sdk.scope import Scope

from qtasks.sentry import SentryPlugin
from qtasks.testing.harness import Harness, wait_event

SentryInit = Any  # the conftest fixtures' types
Probe = Any


async def test_transaction_continues_the_producers_trace(
    harness: Harness, sentry_init: SentryInit, probe: Probe
) -> None:
    transport = sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="resize", queue="default")
    def resize(width: int) -> int:
        with sentry_sdk.start_span(op="image.resize", name="resize"):
            return width // 2

    await harness.start()
    with sentry_sdk.start_transaction(name="upload", op="http.server") as request:
        queued = await harness.add_task("resize", 640)
    assert (await harness.call("wait", queued.uuid, 5)).status == "success"
    await transport.wait_async(lambda t: len(t.transactions()) == 2)

    headers = probe.headers[str(queued.uuid)]
    assert headers["sentry-trace"].startswith(f"{request.trace_id}-{request.span_id}")
    assert f"sentry-trace_id={request.trace_id}" in headers["baggage"]

    task = next(t for t in transport.transactions() if t["transaction"] == "resize")
    trace = task["contexts"]["trace"]
    assert trace["trace_id"] == request.trace_id
    assert trace["parent_span_id"] == request.span_id
    assert trace["op"] == "queue.task.qtasks" and trace["status"] == "ok"
    assert trace["origin"] == "auto.queue.qtasks"
    assert task["transaction_info"] == {"source": "task"}
    assert task["tags"]["qtasks.task_id"] == str(queued.uuid)
    assert task["tags"]["qtasks.status"] == "success"
    spans = {s["op"]: s for s in task["spans"]}
    process = spans["queue.process"]
    assert process["data"]["messaging.system"] == "qtasks"
    assert process["data"]["messaging.message.id"] == str(queued.uuid)
    assert process["data"]["messaging.destination.name"] == "default"
    assert process["data"]["messaging.message.retry.count"] == 0
    assert process["data"]["messaging.message.receive.latency"] >= 0
    # Spans the task function opens belong to the processing span.
    assert spans["image.resize"]["parent_span_id"] == process["span_id"]


async def test_failed_attempts_mark_their_transactions(
    harness: Harness, sentry_init: SentryInit
) -> None:
    transport = sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="flaky", retry=1)
    def flaky() -> None:
        raise OSError("disk")

    await harness.start()
    queued = await harness.add_task("flaky")
    assert (await harness.call("wait", queued.uuid, 5)).status == "error"
    await transport.wait_async(lambda t: len(t.transactions()) == 2 and t.events())
    statuses = sorted(
        (t["tags"]["qtasks.attempt"], t["tags"]["qtasks.status"], t["contexts"]["trace"]["status"])
        for t in transport.transactions()
    )
    assert statuses == [("0", "retry", "internal_error"), ("1", "error", "internal_error")]
    (event,) = transport.events()
    last = next(t for t in transport.transactions() if t["tags"]["qtasks.attempt"] == "1")
    # The event is linked to the span of the attempt that raised it.
    assert event["contexts"]["trace"]["trace_id"] == last["contexts"]["trace"]["trace_id"]
    assert event["contexts"]["trace"]["parent_span_id"] == last["contexts"]["trace"]["span_id"]


async def test_without_tracing_errors_still_join_the_producers_trace(
    harness: Harness, sentry_init: SentryInit
) -> None:
    transport = sentry_init()  # no traces_sample_rate: no transactions
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="boom")
    def boom() -> None:
        raise RuntimeError("x")

    await harness.start()
    with sentry_sdk.isolation_scope():
        producer_trace = (sentry_sdk.get_traceparent() or "").split("-")[0]
        queued = await harness.add_task("boom")
    assert (await harness.call("wait", queued.uuid, 5)).status == "error"
    await transport.wait_async(lambda t: t.events())
    assert transport.transactions() == []
    (event,) = transport.events()
    assert producer_trace and event["contexts"]["trace"]["trace_id"] == producer_trace


async def test_enqueue_leaves_a_breadcrumb(harness: Harness, sentry_init: SentryInit) -> None:
    transport = sentry_init()
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="mail", priority=2)
    def mail() -> None:
        return None

    with sentry_sdk.isolation_scope() as scope:
        scope.clear_breadcrumbs()  # a request's own scope
        queued = await harness.add_task("mail")
        sentry_sdk.capture_message("request failed later")
    (event,) = transport.events()
    crumbs = [c for c in event["breadcrumbs"]["values"] if c["category"] == "qtasks"]
    assert [c["message"] for c in crumbs] == ["enqueued mail"]
    assert crumbs[0]["data"] == {
        "task_name": "mail",
        "task_id": str(queued.uuid),
        "queue": "default",
        "priority": 2,
        "attempt": 0,
    }


async def test_trace_headers_given_by_the_caller_are_kept(
    harness: Harness, sentry_init: SentryInit, probe: Probe
) -> None:
    transport = sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="noop")
    def noop() -> None:
        return None

    given = "771a43a4192642f0b136d5159a501700-1234567890abcdef-1"
    await harness.start()
    queued = await harness.call("enqueue", "noop", headers={"sentry-trace": given})
    assert (await harness.call("wait", queued.uuid, 5)).status == "success"
    await transport.wait_async(lambda t: t.transactions())
    assert probe.headers[str(queued.uuid)] == {"sentry-trace": given}
    (task,) = transport.transactions()
    assert task["contexts"]["trace"]["trace_id"] == "771a43a4192642f0b136d5159a501700"
    assert task["contexts"]["trace"]["parent_span_id"] == "1234567890abcdef"


async def test_other_baggage_is_kept_beside_sentrys(
    harness: Harness, sentry_init: SentryInit, probe: Probe
) -> None:
    sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="noop")
    def noop() -> None:
        return None

    await harness.start()
    with sentry_sdk.start_transaction(name="request"):
        queued = await harness.call("enqueue", "noop", headers={"baggage": "tenant=acme"})
    assert (await harness.call("wait", queued.uuid, 5)).status == "success"
    baggage = probe.headers[str(queued.uuid)]["baggage"].split(",")
    assert "tenant=acme" in baggage and any(b.startswith("sentry-trace_id=") for b in baggage)


async def test_tags_set_in_a_task_stay_in_that_task(
    harness: Harness, sentry_init: SentryInit
) -> None:
    transport = sentry_init()
    harness.app.add_plugin(SentryPlugin())
    harness.app.config.max_tasks_process = 1

    @harness.task(name="tagger")
    def tagger(value: str) -> None:
        sentry_sdk.set_tag("customer", value)
        sentry_sdk.add_breadcrumb(message=f"working for {value}")
        raise ValueError(value)

    await harness.start()
    first = await harness.add_task("tagger", "a")
    assert (await harness.call("wait", first.uuid, 5)).status == "error"
    second = await harness.add_task("tagger", "b")
    assert (await harness.call("wait", second.uuid, 5)).status == "error"
    await transport.wait_async(lambda t: len(t.events()) == 2)
    by_task = {e["tags"]["qtasks.task_id"]: e for e in transport.events()}
    for task, value in ((first, "a"), (second, "b")):
        event = by_task[str(task.uuid)]
        assert event["tags"]["customer"] == value
        assert [c["message"] for c in event["breadcrumbs"]["values"]] == [f"working for {value}"]
    assert "customer" not in Scope.get_isolation_scope()._tags


async def test_transaction_ends_when_the_final_write_is_refused(
    harness: Harness, sentry_init: SentryInit
) -> None:
    transport = sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())
    refused = threading.Event()

    def lose_lease(delivery: Any, mapping: dict[str, str]) -> bool:
        refused.set()
        return False

    harness.app.broker._finish = lose_lease

    @harness.task(name="noop")
    def noop() -> None:
        return None

    await harness.start()
    await harness.add_task("noop")
    await wait_event(refused)
    await harness.stop(0)
    (task,) = transport.transactions()
    assert task["transaction"] == "noop" and task["contexts"]["trace"]["status"] == "ok"


async def test_each_transaction_ends_with_its_own_task_when_tasks_run_back_to_back(
    harness: Harness, sentry_init: SentryInit
) -> None:
    """With one slot, each task is started from inside the one before it; it must not find
    that task's execution in its context and end it early ("aborted")."""
    transport = sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())
    harness.app.config.max_tasks_process = 1

    @harness.task(name="step")
    async def step(n: int) -> int:
        return n

    queued = [await harness.add_task("step", n) for n in range(3)]
    await harness.start()
    for task in queued:
        assert (await harness.call("wait", task.uuid, 5)).status == "success"
    await transport.wait_async(lambda t: len(t.transactions()) == 3)
    statuses = sorted(
        (t["tags"]["qtasks.task_id"], t["contexts"]["trace"]["status"])
        for t in transport.transactions()
    )
    assert statuses == sorted((str(task.uuid), "ok") for task in queued)
