"""Without an SDK: no spans, nothing injected, an incoming trace passed on (the API's no-op)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace

from qtasks import hookimpl
from qtasks.otel import OpenTelemetryPlugin
from qtasks.testing.harness import Harness


@pytest.fixture(autouse=True)
def _no_global_sdk() -> None:
    if getattr(trace, "_TRACER_PROVIDER", None) is not None:
        pytest.skip("a global TracerProvider was set in this process")


class HeaderProbe:
    def __init__(self) -> None:
        self.headers: dict[str, dict[str, str]] = {}

    @hookimpl
    def worker_execute_before(self, task_broker: Any) -> None:
        self.headers[task_broker.task] = dict(task_broker.headers)


async def test_nothing_injected_without_sdk(harness: Harness) -> None:
    probe = HeaderProbe()
    harness.app.add_plugin(OpenTelemetryPlugin())
    harness.app.add_plugin(probe)

    @harness.task(name="noop")
    def noop() -> str:
        return str(trace.get_current_span().get_span_context().is_valid)

    await harness.start()
    queued = await harness.add_task("noop")
    done = await harness.call("wait", queued.uuid, 5)
    assert done.status == "success" and done.returning == "False"
    assert probe.headers["noop"] == {}


async def test_incoming_trace_is_passed_on_without_sdk(harness: Harness) -> None:
    probe = HeaderProbe()
    harness.app.add_plugin(OpenTelemetryPlugin())
    harness.app.add_plugin(probe)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    seen: dict[str, Any] = {}

    @harness.task(name="child")
    def child() -> None:
        return None

    @harness.task(name="parent")
    def parent() -> str:
        seen["trace_id"] = trace.get_current_span().get_span_context().trace_id
        return str(harness.app.add_task("child").uuid) if harness.kind == "sync" else ""

    @harness.task(name="aparent")
    async def aparent() -> str:
        seen["trace_id"] = trace.get_current_span().get_span_context().trace_id
        return str((await harness.app.add_task("child")).uuid)

    name = "parent" if harness.kind == "sync" else "aparent"
    await harness.start()
    queued = await harness.call("enqueue", name, headers={"traceparent": traceparent})
    done = await harness.call("wait", queued.uuid, 5)
    assert done.status == "success"
    assert (await harness.call("wait", done.returning, 5)).status == "success"
    assert seen["trace_id"] == 0x0AF7651916CD43DD8448EB211C80319C
    # The task's own enqueue carries the same trace on.
    assert probe.headers["child"]["traceparent"] == traceparent
