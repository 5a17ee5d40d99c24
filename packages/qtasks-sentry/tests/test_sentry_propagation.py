"""Trace headers built once per propagation context and parsed once per trace (`_propagation`).

Each case runs with the caches and without them (as on a sentry-sdk that lacks what they rely
on): the headers and events must be the same either way, and what sentry-sdk itself gives.
"""

from __future__ import annotations

from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.scope import Scope

from qtasks.sentry import SentryPlugin, _propagation
from qtasks.testing.harness import Harness

SentryInit = Any  # the conftest fixtures' types
Probe = Any


@pytest.fixture(params=["cached", "uncached"])
def caches(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "uncached":
        monkeypatch.setattr(_propagation, "_PRODUCER_CACHE", False)
        monkeypatch.setattr(_propagation, "_WORKER_CACHE", False)
    return str(request.param)


def sentrys_headers() -> dict[str, str]:
    """What sentry-sdk gives for the current scope now (the reference)."""
    return dict(Scope.get_current_scope().iter_trace_propagation_headers())


async def test_enqueue_headers_follow_every_change_of_the_propagation_context(
    harness: Harness, sentry_init: SentryInit, probe: Probe, caches: str
) -> None:
    sentry_init(traces_sample_rate=1.0)
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="noop")
    def noop() -> None:
        return None

    expected: dict[str, dict[str, str]] = {}

    async def enqueue() -> str:
        queued = await harness.add_task("noop")
        expected[str(queued.uuid)] = sentrys_headers()
        return str(queued.uuid)

    await harness.start()
    first, second = await enqueue(), await enqueue()  # the same context: the same headers
    with sentry_sdk.isolation_scope() as request:
        request.set_new_propagation_context()  # a request's own trace, as web frameworks start
        in_request = await enqueue()
        sentry_sdk.continue_trace(
            {  # a new context object for the same scope
                "sentry-trace": "771a43a4192642f0b136d5159a501700-1234567890abcdef-1",
                "baggage": (
                    "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sample_rand=0.5"
                ),
            }
        )
        continued = await enqueue()
        # The same context object, changed in place.
        Scope.get_isolation_scope().get_active_propagation_context().trace_id = "ab" * 16
        changed = await enqueue()
        with sentry_sdk.start_transaction(name="request"):
            in_span = await enqueue()  # a span's headers, never cached
        after_span = await enqueue()
    for uuid in expected:
        assert (await harness.call("wait", uuid, 5)).status == "success"
    await harness.stop()

    assert probe.headers == expected
    trace_ids = {
        name: probe.headers[uuid]["sentry-trace"].split("-")[0]
        for name, uuid in (
            ("first", first),
            ("second", second),
            ("in_request", in_request),
            ("continued", continued),
            ("changed", changed),
            ("in_span", in_span),
            ("after_span", after_span),
        )
    }
    assert trace_ids["first"] == trace_ids["second"] != trace_ids["in_request"]
    assert trace_ids["continued"] == "771a43a4192642f0b136d5159a501700"
    assert trace_ids["changed"] == trace_ids["after_span"] == "ab" * 16
    assert probe.headers[in_span]["sentry-trace"] != probe.headers[after_span]["sentry-trace"]
    assert "sentry-sample_rand=0.5" in probe.headers[continued]["baggage"]


def by_task(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["tags"]["qtasks.task_id"], []).append(event)
    return out


async def test_tasks_of_one_trace_each_have_their_own_span(
    harness: Harness, sentry_init: SentryInit, caches: str
) -> None:
    transport = sentry_init()  # no tracing: the propagation context alone carries the trace
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="boom")
    def boom(n: int) -> None:
        sentry_sdk.capture_message(f"working on {n}")
        raise RuntimeError(n)

    one = {
        "sentry-trace": "771a43a4192642f0b136d5159a501700-1234567890abcdef-1",
        "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700",
    }
    other = {"sentry-trace": "0123456789abcdef0123456789abcdef-fedcba9876543210"}
    await harness.start()
    tasks = [
        await harness.call("enqueue", "boom", (n,), headers=h)
        for n, h in enumerate((one, one, other))
    ]
    for task in tasks:
        assert (await harness.call("wait", task.uuid, 5)).status == "error"
    await transport.wait_async(lambda t: len(t.events()) == 6)
    await harness.stop()

    events = by_task(transport.events())
    traces = [[e["contexts"]["trace"] for e in events[str(t.uuid)]] for t in tasks]
    for trace, headers in zip(traces, (one, one, other), strict=True):
        trace_id, parent, *_ = headers["sentry-trace"].split("-")
        # The task's own message and its error: one span of the producer's trace.
        assert {(c["trace_id"], c["parent_span_id"]) for c in trace} == {(trace_id, parent)}
        assert len({c["span_id"] for c in trace}) == 1
    assert len({trace[0]["span_id"] for trace in traces}) == 3
    # The incoming baggage is each task's own: sentry-sdk fills in its sample_rand per copy.
    dsc = [
        env.headers["trace"]
        for env in transport.envelopes
        if env.get_event() is not None and env.get_event()["level"] == "error"
    ]
    assert sorted(d["trace_id"] for d in dsc) == sorted(
        ["771a43a4192642f0b136d5159a501700"] * 2 + ["0123456789abcdef0123456789abcdef"]
    )


async def test_tasks_without_a_trace_each_start_their_own(
    harness: Harness, sentry_init: SentryInit, caches: str
) -> None:
    transport = sentry_init()

    @harness.task(name="boom")
    def boom() -> None:
        raise RuntimeError("x")

    # From a producer without Sentry (enqueued before the plugin is added): no sentry-trace;
    # then an unparsable one. Either way every task starts a trace of its own, as with sentry-sdk.
    tasks = [await harness.add_task("boom"), await harness.add_task("boom")]
    harness.app.add_plugin(SentryPlugin())
    tasks += [
        await harness.call("enqueue", "boom", headers={"sentry-trace": "nonsense"})
        for _ in range(2)
    ]
    await harness.start()
    for task in tasks:
        assert (await harness.call("wait", task.uuid, 5)).status == "error"
    await transport.wait_async(lambda t: len(t.events()) == 4)
    await harness.stop()
    traces = [e["contexts"]["trace"] for e in transport.events()]
    assert len({t["trace_id"] for t in traces}) == 4
    assert all(t.get("parent_span_id") is None for t in traces)


async def test_continuing_a_trace_follows_the_current_client(
    harness: Harness, sentry_init: SentryInit, caches: str
) -> None:
    first_client = sentry_init()
    harness.app.add_plugin(SentryPlugin())

    @harness.task(name="boom")
    def boom() -> None:
        raise RuntimeError("x")

    # From organisation 7: continued by a client of no organisation, unless it is strict.
    headers = {
        "sentry-trace": "771a43a4192642f0b136d5159a501700-1234567890abcdef-1",
        "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-org_id=7",
    }
    await harness.start()
    task = await harness.call("enqueue", "boom", headers=headers)
    assert (await harness.call("wait", task.uuid, 5)).status == "error"
    await first_client.wait_async(lambda t: t.events())
    other_org = sentry_init(strict_trace_continuation=True)
    task = await harness.call("enqueue", "boom", headers=headers)
    assert (await harness.call("wait", task.uuid, 5)).status == "error"
    await other_org.wait_async(lambda t: t.events())
    await harness.stop()

    (continued,) = first_client.events()
    (restarted,) = other_org.events()
    assert continued["contexts"]["trace"]["trace_id"] == "771a43a4192642f0b136d5159a501700"
    assert restarted["contexts"]["trace"]["trace_id"] != "771a43a4192642f0b136d5159a501700"
