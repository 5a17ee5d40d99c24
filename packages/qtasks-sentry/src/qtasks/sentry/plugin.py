"""`SentryPlugin`: errors, transactions and breadcrumbs for qtasks, through its triggers.

An object of `@hookimpl` methods for `app.add_plugin(SentryPlugin())`; all handlers are sync, so
it works on the sync and the asyncio app, and each returns at once while no Sentry client is
active. What it does, in sentry-sdk's own queue integrations' terms:

- enqueue (`qtasks_add_task_before_broker`): the current trace goes into the envelope headers as
  `sentry-trace` and `baggage`; `broker_add_after` leaves a breadcrumb with the task's id.
- execution (`worker_execute_before`): a forked isolation scope with the task's tags and context,
  the producer's trace continued, and (with tracing enabled) a `queue.task.qtasks` transaction
  with a `queue.process` span, current while the task function runs.
- `worker_remove_finished_task`, the last trigger before the final write, and the one that always
  fires, finishes both and leaves the scope (so nothing is left open when the write is refused).
- `worker_task_error` (after the write, with the exception object) captures the failure, once,
  in the task's scope; a failed attempt that will be retried is not reported unless
  `report_retries=True`.
"""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.scope import Scope, use_isolation_scope, use_scope
from sentry_sdk.tracing_utils import has_tracing_enabled
from sentry_sdk.utils import (
    capture_internal_exception,
    capture_internal_exceptions,
    event_from_exception,
)

from qtasks import hookimpl
from qtasks.schemas.task import id_text
from qtasks.sentry._propagation import BAGGAGE, SENTRY_TRACE, IncomingTrace, OutgoingHeaders
from qtasks.sentry._task_info import TaskInfo

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient
    from sentry_sdk.tracing import Span

    from qtasks.schemas.envelope import Envelope
    from qtasks.schemas.task import Task

ORIGIN = "auto.queue.qtasks"
OP_TASK = "queue.task.qtasks"
OP_PROCESS = "queue.process"
INTEGRATION_PLUGIN_NAME = "qtasks.sentry"
FAILED = frozenset({"error", "retry"})
SPAN_STATUS = {
    "success": "ok",
    "error": "internal_error",
    "retry": "internal_error",
    "cancel": "cancelled",
}


# The context variables behind `sentry_sdk.isolation_scope()` (every 2.x release has them). With
# them, a task's two scopes are forked and entered directly: the same as that context manager
# without its generator (about 1 us of its 3 per task). Without them, the manager is used.
def _scope_vars() -> tuple[ContextVar[Scope | None], ContextVar[Scope | None]] | None:
    found = (
        getattr(sentry_sdk.scope, "_current_scope", None),
        getattr(sentry_sdk.scope, "_isolation_scope", None),
    )
    if isinstance(found[0], ContextVar) and isinstance(found[1], ContextVar):
        return found[0], found[1]
    return None


_SCOPE_VARS = _scope_vars()

_ScopeTokens = tuple[Token[Scope | None], Token[Scope | None]]


@dataclass(slots=True)
class _Execution:
    owner: SentryPlugin
    task_id: str
    scope: Scope
    task_scope: Scope
    # How the scopes are left: the tokens of `_SCOPE_VARS`, or the entered context manager.
    scope_exit: _ScopeTokens | AbstractContextManager[Scope] | None
    transaction: Span | None
    span: Span | None


# The execution running in this context (the per-task asyncio task, or the pool thread): the
# scope managers entered in `worker_execute_before` must be left in this same context.
_current: ContextVar[_Execution | None] = ContextVar("qtasks_sentry_execution", default=None)


class SentryPlugin:
    """Report qtasks failures to Sentry and trace executions (see the README).

    `report_retries`: also report attempts that failed and will be retried (their events carry
    the `qtasks.attempt` tag); by default only the last failure of a task is reported.
    """

    def __init__(self, report_retries: bool = False) -> None:
        self.report_retries = checked_flag(report_retries)
        self._outgoing = OutgoingHeaders()
        self._incoming = IncomingTrace()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} report_retries={self.report_retries}>"

    # Overridden by the integration's plugin, which follows `sentry_sdk.init(integrations=...)`.
    def _client(self) -> BaseClient | None:
        client = sentry_sdk.get_client()
        return client if client.is_active() else None

    def _reports_retries(self, client: BaseClient) -> bool:
        return self.report_retries

    def _defers(self, host: Any) -> bool:
        """Whether the integration's plugin, active on this app too, handles the executions and
        makes the breadcrumbs, so that its options apply (the enqueue's headers are settled by
        whichever comes first: the other sees them)."""
        other = host.pm.get_plugin(INTEGRATION_PLUGIN_NAME)
        return other is not None and other is not self and other._client() is not None

    # -- producer ---------------------------------------------------------------------------------
    @hookimpl
    def qtasks_add_task_before_broker(self, headers: dict[str, str]) -> dict[str, Any] | None:
        client = self._client()
        if client is None or SENTRY_TRACE in headers:
            return None  # no Sentry, or the task already carries a trace (caller's, or ours)
        trace = self._outgoing.get(client)  # shared with later enqueues: not changed here
        if not trace:
            return None
        merged = {**headers, **trace}
        existing = headers.get(BAGGAGE)
        if existing and BAGGAGE in trace and "sentry-" not in existing:
            # Another propagator's entries (OpenTelemetry's W3C baggage) are kept beside ours.
            merged[BAGGAGE] = f"{trace[BAGGAGE]},{existing}"
        return {"headers": merged}

    @hookimpl
    def broker_add_after(self, broker: Any, model: Task) -> None:
        if self._client() is None or self._defers(broker.plugins):
            return
        # What `sentry_sdk.add_breadcrumb(**crumb)` does, without its keyword repacking (a
        # quarter of the breadcrumb's cost, paid on every enqueue).
        Scope.get_isolation_scope().add_breadcrumb(
            {
                "category": "qtasks",
                "type": "info",
                "level": "info",
                "message": f"enqueued {model.task_name}",
                "data": {
                    "task_name": model.task_name,
                    "task_id": id_text(model),
                    "queue": model.queue,
                    "priority": model.priority,
                    "attempt": model.attempt,
                },
            }
        )

    # -- consumer ---------------------------------------------------------------------------------
    @hookimpl
    def worker_execute_before(self, worker: Any, task_broker: Envelope, task_func: Any) -> None:
        client = self._client()
        if client is None or self._defers(worker.plugins):
            return  # no Sentry, or the integration's plugin (its options) handles the task
        env = task_broker
        current = _current.get()
        if current is not None:
            if current.task_id == env.id:
                return  # another SentryPlugin on this app handles this execution
            current.owner._leave(current, "aborted")  # left over by a flow that raised
        info = TaskInfo.of(env, task_func, worker)
        scope_exit: Any
        if _SCOPE_VARS is not None:
            task_scope = Scope.get_current_scope().fork()
            scope = Scope.get_isolation_scope().fork()
            scope_exit = (_SCOPE_VARS[0].set(task_scope), _SCOPE_VARS[1].set(scope))
        else:
            scope_exit = sentry_sdk.isolation_scope()
            scope = scope_exit.__enter__()
            task_scope = Scope.get_current_scope()  # forked along with the isolation scope
        try:
            scope.clear_breadcrumbs()
            scope.add_event_processor(info)
            # A worker in the producer's process (asyncio app) shares the root scopes with it, and
            # their span is whatever the producer was doing: the task starts from none.
            task_scope.span = None
            task_scope.set_transaction_name(env.task, source="task")
            transaction: Span | None = None
            span: Span | None = None
            if not has_tracing_enabled(client.options):
                # Errors still join the producer's trace: only the propagation context is needed,
                # not the transaction `continue_trace` also builds.
                self._incoming.continue_on(scope, client, env.headers)
            else:
                continued = sentry_sdk.continue_trace(
                    env.headers, op=OP_TASK, name=env.task, source="task", origin=ORIGIN
                )
                transaction = sentry_sdk.start_transaction(
                    continued,
                    custom_sampling_context={
                        "qtasks_task": {
                            "name": env.task,
                            "id": env.id,
                            "queue": env.queue,
                            "priority": env.priority,
                            "attempt": env.attempt,
                            "args": env.args,
                            "kwargs": env.kwargs,
                        }
                    },
                )
                transaction.__enter__()
                span = transaction.start_child(op=OP_PROCESS, name=env.task, origin=ORIGIN)
                self._describe(span, env)
                span.__enter__()
            _current.set(_Execution(self, env.id, scope, task_scope, scope_exit, transaction, span))
        except BaseException:
            _exit_scopes(scope_exit)
            raise

    @staticmethod
    def _describe(span: Span, env: Envelope) -> None:
        # The data Sentry's Queues view reads.
        span.set_data("messaging.system", "qtasks")
        span.set_data("messaging.message.id", env.id)
        span.set_data("messaging.destination.name", env.queue)
        span.set_data("messaging.message.retry.count", env.attempt)
        if env.created_at > 0:
            waited = time.time() - max(env.created_at, env.eta or 0.0)
            span.set_data("messaging.message.receive.latency", max(0.0, waited) * 1000)

    @hookimpl
    def worker_remove_finished_task(self, task_broker: Envelope, model: Task) -> None:
        current = _current.get()
        if current is None or current.owner is not self or current.task_id != task_broker.id:
            return
        for span in (current.span, current.transaction):
            if span is not None:
                span.set_tag("qtasks.status", model.status)
        self._leave(current, SPAN_STATUS.get(model.status, "unknown_error"))
        if model.status in FAILED:
            _current.set(current)  # kept for worker_task_error, which has the exception

    def _leave(self, execution: _Execution, status: str) -> None:
        """Finish the span and transaction and leave the task's scope (same context as entered)."""
        _current.set(None)
        if execution.transaction is not None:
            with capture_internal_exceptions():
                for span in (execution.span, execution.transaction):
                    if span is not None:
                        span.set_status(status)
                        span.__exit__(None, None, None)
        if execution.scope_exit is not None:
            _exit_scopes(execution.scope_exit)
            execution.scope_exit = None

    @hookimpl
    def worker_task_error(
        self, task_broker: Envelope, model: Task, exception: BaseException | None
    ) -> None:
        current = _current.get()
        if current is None or current.owner is not self or current.task_id != task_broker.id:
            return
        _current.set(None)
        client = self._client()
        if client is None or exception is None:
            return
        if model.status == "retry" and not self._reports_retries(client):
            return
        # Back in the task's scope (tags, context, breadcrumbs), linked to its span.
        with (
            use_isolation_scope(current.scope),
            use_scope(current.task_scope),
            sentry_sdk.new_scope() as scope,
        ):
            if current.span is not None:
                scope.span = current.span
            event, hint = event_from_exception(
                exception,
                client_options=client.options,
                mechanism={"type": "qtasks", "handled": False},
            )
            sentry_sdk.capture_event(event, hint=hint)


def checked_flag(report_retries: object) -> bool:
    """`report_retries` as given, or `TypeError`: "no" would be taken as true."""
    if type(report_retries) is not bool:
        raise TypeError(f"report_retries must be a bool, not {report_retries!r}")
    return report_retries


def _exit_scopes(scope_exit: Any) -> None:
    """Restore the scopes a task's were forked from (as leaving `isolation_scope()` does)."""
    if isinstance(scope_exit, tuple):
        for var, token in zip(_SCOPE_VARS or (), scope_exit, strict=True):
            try:
                var.reset(token)
            except (LookupError, ValueError):  # a token of another context: reported
                capture_internal_exception(sys.exc_info())
    else:
        scope_exit.__exit__(None, None, None)
