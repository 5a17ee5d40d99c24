"""`OpenTelemetryPlugin`: traces and metrics for enqueues and executions, through qtasks' triggers.

One object of `@hookimpl` methods, registered with `app.add_plugin(OpenTelemetryPlugin())`, so it
receives the app's, broker's and worker's triggers alike. All handlers are sync: they work on the
sync and the asyncio app.

Producer: `qtasks_add_task_before_broker` starts a PRODUCER span and injects its context into the
envelope headers with the global propagator; `broker_add_after` (the record exists, with its id)
ends it, in `SendSpans`, registered only once there is a recording span to end.

Consumer: `worker_execute_before` extracts that context, starts the CONSUMER span as its child
and makes it current for the task function; `worker_remove_finished_task` ends it. That is the
last trigger before the final write and it always fires once a task finishes, even when the
write is then refused (lease lost, so `worker_execute_after` never comes). Both run in the
execution's own context (the per-task asyncio task, or the pool thread), so the context attached
in the first is detached in the second.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode

from qtasks import hookimpl
from qtasks.otel import _semconv as sc
from qtasks.otel._errors import parse_traceback
from qtasks.otel._metrics import Instruments
from qtasks.otel._send import SendSpans
from qtasks.otel._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from opentelemetry.util.types import AttributeValue

    from qtasks.schemas.envelope import Envelope
    from qtasks.schemas.task import Task

FAILED = frozenset({"error", "retry"})
_LABEL_CACHE_SIZE = 4096
_BAGGAGE = "baggage"


@dataclass(slots=True)
class _Execution:
    owner: OpenTelemetryPlugin
    task_id: str
    span: Span
    token: Token[Context] | None
    started: float
    labels: dict[str, AttributeValue]


# The execution running in this context. A context variable, not a dict keyed by task id: it
# needs no cleanup when an execution dies half-way (every task runs in a context of its own,
# the asyncio task's or the sync worker's copy, which dies with it; the span of such an
# execution, whose flow raised before its final write, is not ended, so not exported).
_current: ContextVar[_Execution | None] = ContextVar("qtasks_otel_execution", default=None)


class OpenTelemetryPlugin:
    """Spans and metrics after the OpenTelemetry messaging conventions (see the README).

    `tracer_provider` and `meter_provider` default to the global ones (`opentelemetry.trace`'s
    and `opentelemetry.metrics`' proxies, so an SDK configured later is still picked up). Without
    an SDK every span and instrument is the API's no-op.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(sc.INSTRUMENTATION_NAME, __version__, tracer_provider)
        self._explicit_tracer = tracer_provider is not None
        self._instruments = Instruments(
            metrics.get_meter(sc.INSTRUMENTATION_NAME, __version__, meter_provider)
        )
        self._send_spans = SendSpans()
        self._label_cache: dict[str, dict[str, AttributeValue]] = {}
        self._fields_of: object = None
        self._fields: frozenset[str] = frozenset()

    def remove_from(self, app: Any) -> None:
        """Unregister this plugin (and its producer-span helper) from `app`."""
        self._send_spans.remove_from(app)
        if app.plugins.pm.is_registered(self):
            app.plugins.unregister(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    # -- producer ---------------------------------------------------------------------------------
    # trylast: see the task name, priority and headers that the other plugins settled on.
    @hookimpl(trylast=True)
    def qtasks_add_task_before_broker(
        self,
        qtasks: Any,
        task_name: str,
        priority: int,
        headers: dict[str, str],
        eta: float | None,
        queue: str | None,
    ) -> dict[str, Any] | None:
        if queue is None:  # the task's own
            definition = qtasks.tasks.get(task_name)
            queue = definition.queue if definition is not None else "default"
        # The conventions count attempts to send, so this is the place (the retries the
        # worker enqueues are not counted: they are not sent by a producer).
        self._instruments.sent.add(1, self._labels(sc.SEND, queue, task_name))
        if headers and not self._trace_fields().isdisjoint(headers):
            # The caller (or another OpenTelemetry plugin) supplied the creation context; the
            # conventions say to leave it alone.
            return None
        if not self._tracing():
            # What the API's no-op tracer would do: pass on the current trace, if any (an
            # empty context, the usual case, has none).
            current = otel_context.get_current()
            if not current or not trace.get_current_span(current).get_span_context().is_valid:
                return None
            return self._inject(headers, current)
        attributes: dict[str, AttributeValue] = {
            sc.MESSAGING_SYSTEM: sc.SYSTEM,
            sc.MESSAGING_OPERATION_TYPE: sc.SEND,
            sc.MESSAGING_OPERATION_NAME: sc.SEND,
            sc.MESSAGING_DESTINATION_NAME: queue,
            sc.TASK_NAME: task_name,
            sc.TASK_PRIORITY: priority,
        }
        if eta is not None:
            attributes[sc.TASK_ETA] = eta
        span = self._tracer.start_span(
            f"{sc.SEND} {queue}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        if span.is_recording():
            self._send_spans.equip(qtasks)
            self._send_spans.push(task_name, time.time(), span)
        elif not span.get_span_context().is_valid:
            return None
        return self._inject(headers, trace.set_span_in_context(span))

    def _trace_fields(self) -> frozenset[str]:
        """The headers the global propagator writes, but `baggage`: other tools (Sentry) write
        that one too, and it is no trace context."""
        textmap = propagate.get_global_textmap()
        if textmap is not self._fields_of:
            self._fields_of = textmap
            self._fields = frozenset(textmap.fields) - {_BAGGAGE}
        return self._fields

    @staticmethod
    def _inject(headers: dict[str, str], context: Context | None) -> dict[str, Any] | None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=context)
        if not carrier:
            return None
        if headers.get(_BAGGAGE) and carrier.get(_BAGGAGE):
            carrier[_BAGGAGE] = _merge_baggage(headers[_BAGGAGE], carrier[_BAGGAGE])
        return {"headers": {**headers, **carrier}}

    def _tracing(self) -> bool:
        """False when every span would be the API's no-op: no provider given, no SDK set.

        `ProxyTracer` makes this very test (`trace._TRACER_PROVIDER`) before each span and then
        hands out the no-op tracer; making it here skips the attributes and the proxy call on
        the path the hot-path budget is for. Should the API drop the name, spans are always
        started (still correct, only slower).
        """
        return self._explicit_tracer or getattr(trace, "_TRACER_PROVIDER", True) is not None

    # -- consumer ---------------------------------------------------------------------------------
    @hookimpl
    def worker_execute_before(self, worker: Any, task_broker: Envelope) -> None:
        env = task_broker
        current = _current.get()
        if current is not None:
            if current.task_id == env.id:
                return  # another OpenTelemetryPlugin on this app traces this execution
            current.owner._abandon(current)
        # Extracted into an empty context, never the worker's ambient one: a worker started
        # inside some span must not make every task its child.
        parent = propagate.extract(env.headers, context=Context()) if env.headers else None
        if self._tracing():
            span = self._process_span(worker, env, parent)
            context = (
                trace.set_span_in_context(span, parent)
                if span.get_span_context().is_valid
                else None
            )
        else:
            # What the API's no-op tracer would do: pass the incoming context on unchanged.
            span = trace.get_current_span(parent) if parent is not None else INVALID_SPAN
            context = parent
        # Attached (current for the task function) only when there is a trace to continue.
        token = otel_context.attach(context) if context is not None else None
        labels = self._labels(sc.PROCESS, env.queue, env.task)
        if env.created_at > 0:
            waited = time.time() - max(env.created_at, env.eta or 0.0)
            self._instruments.queued.record(max(0.0, waited), labels)
        _current.set(_Execution(self, env.id, span, token, time.perf_counter(), labels))

    def _process_span(self, worker: Any, env: Envelope, parent: Context | None) -> Span:
        attributes: dict[str, AttributeValue] = {
            sc.MESSAGING_SYSTEM: sc.SYSTEM,
            sc.MESSAGING_OPERATION_TYPE: sc.PROCESS,
            sc.MESSAGING_OPERATION_NAME: sc.PROCESS,
            sc.MESSAGING_DESTINATION_NAME: env.queue,
            sc.MESSAGING_MESSAGE_ID: env.id,
            sc.TASK_NAME: env.task,
            sc.TASK_PRIORITY: env.priority,
            sc.TASK_ATTEMPT: env.attempt,
        }
        if env.retry is not None:
            attributes[sc.TASK_RETRIES_LEFT] = env.retry
        if env.parent is not None:
            attributes[sc.TASK_PARENT_ID] = env.parent
        worker_id = getattr(worker, "worker_id", None)
        if worker_id:
            attributes[sc.MESSAGING_CLIENT_ID] = str(worker_id)
        links = None
        creation = trace.get_current_span(parent).get_span_context() if parent else None
        if creation is not None and creation.is_valid:
            # The conventions want a link to the creation context; it is also the parent here,
            # so the producer's trace continues (one message per process span).
            links = [Link(creation)]
        return self._tracer.start_span(
            f"{sc.PROCESS} {env.queue}",
            context=parent if parent is not None else Context(),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )

    @hookimpl
    def worker_remove_finished_task(self, task_broker: Envelope, model: Task) -> None:
        current = _current.get()
        if current is None or current.owner is not self or current.task_id != task_broker.id:
            return
        _current.set(None)
        span = current.span
        if model.status in FAILED:
            error = parse_traceback(model.traceback)
            labels = {**current.labels, sc.TASK_STATUS: model.status, sc.ERROR_TYPE: error.type}
            if span.is_recording():
                span.set_attribute(sc.ERROR_TYPE, error.type)
                span.add_event(
                    "exception",
                    {
                        "exception.type": error.type,
                        "exception.message": error.message,
                        "exception.stacktrace": error.stacktrace,
                    },
                )
                description = f"{error.type}: {error.message}" if error.message else error.type
                span.set_status(Status(StatusCode.ERROR, description))
            span.set_attribute(sc.TASK_STATUS, model.status)
        else:
            labels = self._labels(sc.PROCESS, task_broker.queue, task_broker.task, model.status)
            if span is not INVALID_SPAN:
                span.set_attribute(sc.TASK_STATUS, model.status)
        self._close(current)
        self._instruments.duration.record(time.perf_counter() - current.started, labels)
        self._instruments.finished.add(1, labels)

    def _labels(
        self, operation: str, queue: str, task_name: str, status: str | None = None
    ) -> dict[str, AttributeValue]:
        """The attributes of a metric point, one shared dict per combination: a task costs no
        dict allocations on the no-SDK path (they are what a busy worker's GC pays for)."""
        key = f"{operation}\0{queue}\0{task_name}\0{status}"
        labels = self._label_cache.get(key)
        if labels is None:
            if len(self._label_cache) >= _LABEL_CACHE_SIZE:
                self._label_cache.clear()  # unbounded task names (enqueue_unknown_tasks)
            labels = {
                sc.MESSAGING_SYSTEM: sc.SYSTEM,
                sc.MESSAGING_OPERATION_NAME: operation,
                sc.MESSAGING_DESTINATION_NAME: queue,
                sc.TASK_NAME: task_name,
            }
            if status is not None:
                labels[sc.TASK_STATUS] = status
            self._label_cache[key] = labels
        return labels

    def _abandon(self, execution: _Execution) -> None:
        """An execution in this thread that never reached its finish (the worker's flow raised)."""
        _current.set(None)
        execution.span.set_status(Status(StatusCode.ERROR, "execution ended without a result"))
        self._close(execution)

    @staticmethod
    def _close(execution: _Execution) -> None:
        if execution.token is not None:
            otel_context.detach(execution.token)
        execution.span.end()


def _merge_baggage(existing: str, ours: str) -> str:
    """W3C baggage is a list: the entries already there (Sentry's) are kept, and ours follow,
    but for keys already there. A worker's baggage holds the entries its task came with, so
    without that, Sentry's would be sent twice on every enqueue from a task."""
    keys = {entry.split("=", 1)[0].strip() for entry in existing.split(",")}
    added = [entry for entry in ours.split(",") if entry.split("=", 1)[0].strip() not in keys]
    return ",".join([existing, *added]) if added else existing
