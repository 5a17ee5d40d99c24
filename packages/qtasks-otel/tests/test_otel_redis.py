"""One trace across processes: a producer here, a worker in a subprocess, Redis between them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from qtasks import QueueTasks
from qtasks.otel import OpenTelemetryPlugin

pytest.importorskip("qtasks.redis", reason="qtasks-redis is not installed")

WORKER = Path(__file__).resolve().parent / "otel_worker_app.py"
Telemetry = Any  # the conftest fixture's type


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_trace_continues_in_a_worker_process(
    redis_server: Any, telemetry: Telemetry, tmp_path: Path, flavour: str
) -> None:
    name = f"otel-{uuid.uuid4().hex[:8]}"
    spans_file = tmp_path / "worker-spans.jsonl"
    producer = QueueTasks(name=name, broker_url=redis_server.url)
    # "double" is registered in the worker only (shared_task registrations of other tests
    # would otherwise make this producer strict about unknown names).
    producer.config.enqueue_unknown_tasks = True
    producer.add_plugin(OpenTelemetryPlugin(telemetry.tracer_provider, telemetry.meter_provider))
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), redis_server.url, name, str(spans_file), flavour],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("web request") as request:
            # Waits for the result the worker writes (woken by that write, not by polling).
            done = producer.add_task("double", 21, timeout=60)
        assert done is not None and done.status == "success" and done.returning == 42
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr

    # The worker's span ended (and was written) before the result it waited for existed.
    (process,) = [json.loads(line) for line in spans_file.read_text().splitlines()]
    (send,) = telemetry.spans(SpanKind.PRODUCER)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert f"{send.context.trace_id:032x}" == trace_id
    assert process["kind"] == "CONSUMER" and process["trace_id"] == trace_id
    assert process["parent_id"] == f"{send.context.span_id:016x}"
    assert process["attributes"]["messaging.message.id"] == str(done.uuid)
    assert process["attributes"]["qtasks.task.status"] == "success"
    assert dict(send.attributes or {})["messaging.message.id"] == str(done.uuid)
