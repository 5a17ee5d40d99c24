"""A traced worker process for test_otel_redis: `python otel_worker_app.py URL NAME OUT FLAVOUR`.

Runs a qtasks worker (sync or asyncio app) on the Redis broker at URL with an SDK tracer that
appends every finished span to OUT as one JSON line, synchronously (SimpleSpanProcessor), so a
span is on disk the moment it ends. Stops on SIGTERM (the apps' run_forever drains first).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from qtasks.otel import OpenTelemetryPlugin


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "kind": span.kind.name,
                            "trace_id": f"{span.context.trace_id:032x}",
                            "span_id": f"{span.context.span_id:016x}",
                            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                            "attributes": dict(span.attributes or {}),
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


def build(url: str, name: str, flavour: str) -> Any:
    if flavour == "async":
        from qtasks.asyncio import QueueTasks as AsyncQueueTasks

        app: Any = AsyncQueueTasks(name=name, broker_url=url)

        @app.task(name="double")
        async def double(x: int) -> int:
            return 2 * x

        return app
    from qtasks import QueueTasks

    app = QueueTasks(name=name, broker_url=url)

    @app.task(name="double")
    def double_sync(x: int) -> int:
        return 2 * x

    return app


def main() -> None:
    url, name, out, flavour = sys.argv[1:5]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(out)))
    app = build(url, name, flavour)
    app.add_plugin(OpenTelemetryPlugin(tracer_provider=provider))
    app.run_forever(num_workers=1)
    provider.shutdown()


if __name__ == "__main__":
    main()
