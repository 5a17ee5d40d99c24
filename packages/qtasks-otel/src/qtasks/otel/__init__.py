"""OpenTelemetry tracing and metrics for QueueTasks.

    from qtasks.otel import OpenTelemetryPlugin
    app.add_plugin(OpenTelemetryPlugin())

or, the instrumentation way, `QtasksInstrumentor().instrument()` before the apps are created.
"""

from __future__ import annotations

from qtasks.otel._version import __version__
from qtasks.otel.instrumentor import QtasksInstrumentor
from qtasks.otel.plugin import OpenTelemetryPlugin

__all__ = ["OpenTelemetryPlugin", "QtasksInstrumentor", "__version__"]
