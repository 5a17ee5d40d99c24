"""The plugin's instruments, made once per plugin from a `Meter` (the API's no-op without SDK)."""

from __future__ import annotations

from opentelemetry.metrics import Meter

from qtasks.otel import _semconv as sc


class Instruments:
    def __init__(self, meter: Meter) -> None:
        self.sent = meter.create_counter(
            sc.METRIC_SENT, unit="{message}",
            description="Tasks enqueued: messages written to the broker, retries included.")
        self.finished = meter.create_counter(
            sc.METRIC_FINISHED, unit="{task}",
            description="Task executions that ended, by qtasks.task.status "
                        "(success, error, retry, cancel).")
        self.duration = meter.create_histogram(
            sc.METRIC_PROCESS_DURATION, unit="s",
            description="Duration of a task execution, from its start to its final status.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS)
        self.queued = meter.create_histogram(
            sc.METRIC_QUEUED_DURATION, unit="s",
            description="Time a task waited in its queue: from enqueue (or its eta, if later) "
                        "to the start of its execution.",
            explicit_bucket_boundaries_advisory=sc.QUEUED_BUCKETS)
