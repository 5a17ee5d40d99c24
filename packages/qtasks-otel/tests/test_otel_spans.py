"""Producer and consumer spans in one process (memory broker), for both app flavours."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, StatusCode

from qtasks import hookimpl
from qtasks.exc import PayloadTooLargeError
from qtasks.testing.harness import Harness, wait_event

Telemetry = Any  # the conftest fixture's type; conftest is not importable as a module


def by_kind(telemetry: Telemetry) -> tuple[list[Any], list[Any]]:
    return telemetry.spans(SpanKind.PRODUCER), telemetry.spans(SpanKind.CONSUMER)


async def test_one_trace_from_request_to_execution(harness: Harness, telemetry: Telemetry) -> None:
    harness.app.add_plugin(telemetry.plugin())
    seen: dict[str, Any] = {}

    @harness.task(name="double", queue="default")
    def double(x: int) -> int:
        seen["span"] = trace.get_current_span().get_span_context()
        return 2 * x

    await harness.start()
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        queued = await harness.add_task("double", 21)
    done = await harness.call("wait", queued.uuid, 5)
    assert done.status == "success"

    (send,), (process,) = by_kind(telemetry)
    trace_id = request.get_span_context().trace_id
    assert send.context.trace_id == process.context.trace_id == trace_id
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    # The consumer span is current while the task function runs.
    assert seen["span"].span_id == process.context.span_id

    assert send.name == "send default" and process.name == "process default"
    assert dict(send.attributes or {}) == {
        "messaging.system": "qtasks",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "default",
        "messaging.message.id": str(queued.uuid),
        "qtasks.task.name": "double",
        "qtasks.task.priority": 0,
    }
    attrs = dict(process.attributes or {})
    assert attrs["messaging.system"] == "qtasks"
    assert attrs["messaging.operation.type"] == attrs["messaging.operation.name"] == "process"
    assert attrs["messaging.destination.name"] == "default"
    assert attrs["messaging.message.id"] == str(queued.uuid)
    assert attrs["messaging.client.id"] == done.worker
    assert attrs["qtasks.task.name"] == "double" and attrs["qtasks.task.attempt"] == 0
    assert attrs["qtasks.task.status"] == "success"
    assert process.status.status_code == StatusCode.UNSET


async def test_failure_sets_status_and_exception(harness: Harness, telemetry: Telemetry) -> None:
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="boom")
    def boom() -> None:
        raise ValueError("it broke\nsecond line")

    await harness.start()
    queued = await harness.add_task("boom")
    assert (await harness.call("wait", queued.uuid, 5)).status == "error"

    (process,) = telemetry.spans(SpanKind.CONSUMER)
    assert process.status.status_code == StatusCode.ERROR
    assert process.status.description == "ValueError: it broke"
    attrs = dict(process.attributes or {})
    assert attrs["error.type"] == "ValueError" and attrs["qtasks.task.status"] == "error"
    (event,) = process.events
    assert event.name == "exception"
    event_attrs = dict(event.attributes or {})
    assert event_attrs["exception.type"] == "ValueError"
    assert event_attrs["exception.message"] == "it broke"
    assert 'raise ValueError("it broke' in str(event_attrs["exception.stacktrace"])


async def test_a_huge_message_keeps_the_error_type(harness: Harness, telemetry: Telemetry) -> None:
    # Before, the record kept the last 16 KiB of the traceback: a longer message lost its
    # "ValueError:" start, and a line of the message became error.type (a metric label).
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="rows")
    def rows() -> None:
        raise ValueError("bad rows: " + ", ".join(f"row{i}" for i in range(3000)))

    await harness.start()
    queued = await harness.add_task("rows")
    final = await harness.call("wait", queued.uuid, 5)
    assert final.status == "error" and "(message cut)" in final.traceback
    assert 'raise ValueError("bad rows: "' in final.traceback  # the last frame is kept
    (process,) = telemetry.spans(SpanKind.CONSUMER)
    assert dict(process.attributes or {})["error.type"] == "ValueError"


async def test_each_retry_attempt_is_a_span_of_the_same_trace(
    harness: Harness, telemetry: Telemetry
) -> None:
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="flaky", retry=2)
    def flaky() -> None:
        raise KeyError("nope")

    await harness.start()
    queued = await harness.add_task("flaky")
    final = await harness.call("wait", queued.uuid, 5)
    assert final.status == "error" and final.attempt == 2

    (send,), processes = by_kind(telemetry)
    processes.sort(key=lambda s: dict(s.attributes or {})["qtasks.task.attempt"])
    assert [dict(s.attributes or {})["qtasks.task.status"] for s in processes] == [
        "retry",
        "retry",
        "error",
    ]
    assert [dict(s.attributes or {})["qtasks.task.retries_left"] for s in processes] == [2, 1, 0]
    assert all(s.status.status_code == StatusCode.ERROR for s in processes)
    # Retries carry the first envelope's headers: every attempt continues the producer's trace.
    assert {s.context.trace_id for s in processes} == {send.context.trace_id}
    assert all(s.parent is not None and s.parent.span_id == send.context.span_id for s in processes)
    first = dict(processes[0].attributes or {})
    assert (
        dict(processes[1].attributes or {})["qtasks.task.parent_id"]
        == (first["messaging.message.id"])
    )


async def test_bulk_enqueue_gives_each_span_its_task_id(
    harness: Harness, telemetry: Telemetry
) -> None:
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="a")
    def a(n: int) -> int:
        return n

    @harness.task(name="b", queue="other")
    def b(n: int) -> int:
        return n

    records = await harness.call(
        "add_tasks",
        [("a", (n,), {}, None) if n != 2 else ("b", (n,), {}, None) for n in (1, 2, 3, 4)],
    )
    sends = telemetry.spans(SpanKind.PRODUCER)
    assert len(sends) == 4
    # In enqueue order, each span ended with its own record's id and queue.
    ids = [dict(s.attributes or {})["messaging.message.id"] for s in sends]
    assert ids == [str(r.uuid) for r in records]
    assert [s.name for s in sends] == ["send default", "send other", "send default", "send default"]

    harness.app.worker.queues = ["default", "other"]
    await harness.start()
    for record in records:
        assert (await harness.call("wait", record.uuid, 5)).status == "success"
    parents = {dict(s.attributes or {})["messaging.message.id"]: s.context.span_id for s in sends}
    for process in telemetry.spans(SpanKind.CONSUMER):
        message_id = dict(process.attributes or {})["messaging.message.id"]
        assert process.parent is not None and process.parent.span_id == parents[message_id]


async def test_failed_enqueue_does_not_take_the_next_tasks_span(
    harness: Harness, telemetry: Telemetry
) -> None:
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="echo")
    def echo(text: str) -> str:
        return text

    app = harness.app
    app.config.max_payload_bytes = 1024

    # Both enqueues from one thread (sync) or task (async): a waiting span lives in the
    # enqueuing context, as it does in a web server's request thread.
    def in_one_thread() -> Any:
        with pytest.raises(PayloadTooLargeError):
            app.add_task("echo", "x" * 2000)
        assert telemetry.spans(SpanKind.PRODUCER) == []  # still waiting for a record
        return app.add_task("echo", "small")

    if harness.kind == "sync":
        ok = await asyncio.to_thread(in_one_thread)
    else:
        with pytest.raises(PayloadTooLargeError):
            await app.add_task("echo", "x" * 2000)
        assert telemetry.spans(SpanKind.PRODUCER) == []
        ok = await app.add_task("echo", "small")

    failed, sent = telemetry.spans(SpanKind.PRODUCER)
    assert dict(sent.attributes or {})["messaging.message.id"] == str(ok.uuid)
    assert sent.status.status_code == StatusCode.UNSET
    assert failed.status.status_code == StatusCode.ERROR
    assert "messaging.message.id" not in dict(failed.attributes or {})


async def test_caller_supplied_trace_context_is_kept(
    harness: Harness, telemetry: Telemetry
) -> None:
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="noop")
    def noop() -> None:
        return None

    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await harness.start()
    queued = await harness.call("enqueue", "noop", headers={"traceparent": traceparent})
    assert (await harness.call("wait", queued.uuid, 5)).status == "success"
    assert telemetry.spans(SpanKind.PRODUCER) == []
    (process,) = telemetry.spans(SpanKind.CONSUMER)
    assert process.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert process.parent is not None and process.parent.span_id == 0xB7AD6B7169203331


async def test_worker_started_inside_a_span_does_not_adopt_tasks(
    harness: Harness, telemetry: Telemetry
) -> None:
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="noop")
    def noop() -> None:
        return None

    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("startup"):
        await harness.start()
    # Straight to the broker: no producer, so no trace context in the envelope.
    queued = await harness.call_on(harness.app.broker, "add", "noop")
    assert (await harness.call("wait", queued.uuid, 5)).status == "success"
    (process,) = telemetry.spans(SpanKind.CONSUMER)
    assert process.parent is None and process.links == ()


async def test_span_ends_when_the_final_write_is_refused(
    harness: Harness, telemetry: Telemetry
) -> None:
    """Lease lost: the worker's write is refused and `worker_execute_after` never fires."""
    harness.app.add_plugin(telemetry.plugin())
    refused = threading.Event()
    after: list[str] = []

    class Probe:
        @hookimpl
        def worker_execute_after(self, task_broker: Any) -> None:
            after.append(task_broker.id)

    harness.app.add_plugin(Probe())
    broker = harness.app.broker

    def lose_lease(delivery: Any, mapping: dict[str, str]) -> bool:
        refused.set()
        return False

    broker._finish = lose_lease

    @harness.task(name="noop")
    def noop() -> None:
        return None

    await harness.start()
    await harness.add_task("noop")
    await wait_event(refused)
    await harness.stop(0)
    (process,) = telemetry.spans(SpanKind.CONSUMER)
    assert dict(process.attributes or {})["qtasks.task.status"] == "success"
    assert after == []


async def test_baggage_from_elsewhere_is_no_trace_context(
    harness: Harness, telemetry: Telemetry
) -> None:
    """Sentry (or the caller) writes `baggage` too: the trace context is still injected, and the
    entries already there are kept beside the producer's own."""
    harness.app.add_plugin(telemetry.plugin())
    seen: dict[str, dict[str, str]] = {}

    class Probe:
        @hookimpl
        def worker_execute_before(self, task_broker: Any) -> None:
            seen[task_broker.id] = dict(task_broker.headers)

    harness.app.add_plugin(Probe())

    @harness.task(name="noop")
    def noop() -> None:
        return None

    await harness.start()
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        token = otel_context.attach(baggage.set_baggage("user", "7"))
        try:
            queued = await harness.call("enqueue", "noop", headers={"baggage": "sentry-x=1"})
        finally:
            otel_context.detach(token)
    assert (await harness.call("wait", queued.uuid, 5)).status == "success"
    headers = seen[str(queued.uuid)]
    assert "traceparent" in headers
    assert headers["baggage"].split(",") == ["sentry-x=1", "user=7"]
    (send,) = telemetry.spans(SpanKind.PRODUCER)
    (process,) = telemetry.spans(SpanKind.CONSUMER)
    assert process.parent is not None and process.parent.span_id == send.context.span_id


async def test_baggage_entries_already_there_are_not_sent_twice(
    harness: Harness, telemetry: Telemetry
) -> None:
    """A task enqueued from a task: its baggage holds the entries the parent came with
    (Sentry's), which Sentry writes again. Before, they were sent twice on every such hop."""
    if harness.kind == "sync":
        pytest.skip("the parent awaits the asyncio app's enqueue")
    harness.app.add_plugin(telemetry.plugin())
    seen: dict[str, str] = {}

    class Probe:
        @hookimpl
        def worker_execute_before(self, task_broker: Any) -> None:
            seen[task_broker.task] = task_broker.headers.get("baggage", "")

    harness.app.add_plugin(Probe())

    @harness.task(name="child")
    def child() -> None:
        return None

    @harness.task(name="parent")
    async def parent() -> str:
        # What Sentry's plugin does on every enqueue: its own entries in the header.
        child_task = await harness.app.enqueue("child", headers={"baggage": "sentry-x=1"})
        return str(child_task.uuid)

    await harness.start()
    queued = await harness.call("enqueue", "parent", headers={"baggage": "sentry-x=1"})
    final = await harness.call("wait", queued.uuid, 5)
    assert (await harness.call("wait", final.returning, 5)).status == "success"
    assert seen["child"].split(",") == ["sentry-x=1"]
