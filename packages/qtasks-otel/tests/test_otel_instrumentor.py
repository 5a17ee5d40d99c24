"""`QtasksInstrumentor`: every app made after `instrument()` is traced; the entry point."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from qtasks import QueueTasks
from qtasks.apps.base import BaseQueueTasks, on_app_created
from qtasks.otel import OpenTelemetryPlugin, QtasksInstrumentor

Telemetry = Any  # the conftest fixture's type


@pytest.fixture
def instrumentor() -> Iterator[QtasksInstrumentor]:
    inst = QtasksInstrumentor()
    yield inst
    inst.uninstrument()


def plugins_of(app: BaseQueueTasks) -> list[Any]:
    return [p for p in app.plugins.pm.get_plugins() if isinstance(p, OpenTelemetryPlugin)]


def test_instrument_and_uninstrument(
    instrumentor: QtasksInstrumentor, telemetry: Telemetry
) -> None:
    before = QueueTasks(name="otel-before", broker_url="memory://otel-before")
    assert QtasksInstrumentor() is instrumentor  # a singleton, like BaseInstrumentor
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        skip_dep_check=True,
    )
    assert instrumentor.is_instrumented_by_opentelemetry
    instrumentor.instrument()  # twice is harmless
    app = QueueTasks(name="otel-inst", broker_url="memory://otel-inst")
    assert len(plugins_of(app)) == 1 and plugins_of(before) == []

    @app.task(name="noop")
    def noop() -> None:
        return None

    with app:
        assert app.add_task("noop", timeout=5).status == "success"
    assert len(telemetry.spans(SpanKind.CONSUMER)) == 1

    # Another integration that equips every app, hooked in after the instrumentor.
    equipped: list[str] = []
    stop_other = on_app_created(lambda made: equipped.append(made.name))
    try:
        instrumentor.uninstrument()
        assert not instrumentor.is_instrumented_by_opentelemetry
        assert plugins_of(app) == []
        # The producer-span helper went too (before, it stayed registered).
        assert not [p for p in app.plugins.pm.get_plugins() if type(p).__name__ == "SendSpans"]
        assert plugins_of(QueueTasks(name="otel-after", broker_url="memory://otel-after")) == []
        # Before, uninstrument() put back the `__init__` it had wrapped, undoing the other's.
        assert equipped == ["otel-after"]
    finally:
        stop_other()


def test_registered_for_opentelemetry_instrument() -> None:
    (ep,) = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "qtasks"]
    assert ep.load() is QtasksInstrumentor
    assert "qtasks-core >= 2.0" in QtasksInstrumentor().instrumentation_dependencies()
