"""The plugin's instruments, made once per plugin from a `Meter` (the API's no-op without SDK)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.metrics import Histogram, Meter

from qtasks.otel import _semconv as sc


def _histogram(meter: Meter, name: str, description: str, buckets: Sequence[float]) -> Histogram:
    try:
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # older opentelemetry-api releases (1.27 included) have no bucket advisory
        return meter.create_histogram(name, unit="s", description=description)


class Instruments:
    def __init__(self, meter: Meter) -> None:
        self.sent = meter.create_counter(
            sc.METRIC_SENT,
            unit="{message}",
            description="Tasks enqueued by producers (messages sent to the broker).",
        )
        self.finished = meter.create_counter(
            sc.METRIC_FINISHED,
            unit="{task}",
            description="Task executions that ended, by qtasks.task.status "
            "(success, error, retry, cancel).",
        )
        self.duration = _histogram(
            meter,
            sc.METRIC_PROCESS_DURATION,
            "Duration of a task execution, from its start to its final status.",
            sc.DURATION_BUCKETS,
        )
        self.queued = _histogram(
            meter,
            sc.METRIC_QUEUED_DURATION,
            "Time a task waited in its queue: from enqueue (or its eta, if later) to the start "
            "of its execution.",
            sc.QUEUED_BUCKETS,
        )
