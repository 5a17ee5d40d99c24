"""Attribute and instrument names: the OpenTelemetry messaging conventions, plus `qtasks.*`.

Spelled out here rather than imported from `opentelemetry-semantic-conventions`, so that the
package depends on `opentelemetry-api` alone. The messaging names are those of the current
(development-status) messaging conventions: operation types `send` and `process`, which
replaced `publish` and `deliver`.
"""

from __future__ import annotations

from typing import Final

SYSTEM: Final = "qtasks"
INSTRUMENTATION_NAME: Final = "qtasks.otel"

# Messaging semantic conventions.
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_CLIENT_ID: Final = "messaging.client.id"
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"

SEND: Final = "send"
PROCESS: Final = "process"

# qtasks-specific attributes.
TASK_NAME: Final = "qtasks.task.name"
TASK_PRIORITY: Final = "qtasks.task.priority"
TASK_ATTEMPT: Final = "qtasks.task.attempt"
TASK_RETRIES_LEFT: Final = "qtasks.task.retries_left"
TASK_PARENT_ID: Final = "qtasks.task.parent_id"
TASK_ETA: Final = "qtasks.task.eta"
TASK_STATUS: Final = "qtasks.task.status"

# Instruments. The first two are the conventions' own; the others have no convention.
METRIC_SENT: Final = "messaging.client.sent.messages"
METRIC_PROCESS_DURATION: Final = "messaging.process.duration"
METRIC_FINISHED: Final = "qtasks.tasks.finished"
METRIC_QUEUED_DURATION: Final = "qtasks.task.queued.duration"

# The buckets the conventions recommend for messaging durations (seconds); queue waits are
# often longer, so theirs go on to an hour.
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
QUEUED_BUCKETS: Final = (
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
