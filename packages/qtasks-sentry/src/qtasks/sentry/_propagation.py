"""The trace headers a task carries, built and parsed once per trace rather than once per task.

Without an active span, Sentry takes a producer's `sentry-trace` and `baggage` from the scope's
propagation context, which is the same for every enqueue within one request (or for a whole
producer that has no request scopes): building the baggage (percent-encoding every item) was
most of an enqueue's Sentry cost. On the worker, tasks of one trace carry that same pair, and
parsing it (`PropagationContext.from_incoming_data`: a regex, the baggage, the deterministic
`sample_rand`, seeded from the trace id) was the largest part of a task's. Both sides keep the
last result and reuse it only while everything it was made from is unchanged; both delegate to
sentry-sdk whenever a case is not the plain one, or this sentry-sdk lacks what they rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sentry_sdk.scope
from sentry_sdk.scope import Scope
from sentry_sdk.tracing_utils import Baggage, PropagationContext

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient

SENTRY_TRACE = "sentry-trace"
BAGGAGE = "baggage"

# Newer sentry-sdks (those the caches were written against) have these; older ones keep the
# uncached path, which is what sentry-sdk itself does.
_has_external: Callable[[], bool] = getattr(
    sentry_sdk.scope, "has_external_propagation_context", lambda: True
)
_PRODUCER_CACHE = hasattr(sentry_sdk.scope, "has_external_propagation_context") and hasattr(
    Scope, "get_active_propagation_context"
)
_WORKER_CACHE = "_trace_id" in getattr(PropagationContext, "__slots__", ())


class OutgoingHeaders:
    """`sentry-trace` and `baggage` for the current scope (what
    `Scope.iter_trace_propagation_headers` gives), kept for the propagation context they came
    from. A hit needs the same client, the same context object with the same trace and span ids
    and the same baggage object with the same items, and no span on the scope (a span's headers
    are its own, so they are never cached). The result is shared: callers copy before changing."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        # (client, context, trace id, span id, baggage, baggage items, headers): one tuple, so a
        # thread reading it while another replaces it sees one whole entry.
        self._last: tuple[Any, ...] | None = None

    def get(self, client: BaseClient) -> dict[str, str]:
        scope = Scope.get_current_scope()
        if (
            not _PRODUCER_CACHE
            or scope.span is not None
            or getattr(scope, "streamed_span", None) is not None
            or not client.options.get("propagate_traces")
            or _has_external()
        ):
            return dict(scope.iter_trace_propagation_headers())
        context = scope.get_active_propagation_context()
        trace_id, span_id = context.trace_id, context.span_id
        last = self._last
        if (
            last is not None
            and last[0] is client
            and last[1] is context
            and last[2] == trace_id
            and last[3] == span_id
            and last[4] is context.baggage
            and last[4] is not None
            and last[5] == last[4].sentry_items
        ):
            headers: dict[str, str] = last[6]
            return headers
        headers = dict(scope.iter_trace_propagation_headers())
        baggage = context.baggage  # made by the call above when the context had none
        items = dict(baggage.sentry_items) if baggage is not None else None
        self._last = (client, context, trace_id, span_id, baggage, items, headers)
        return headers


class IncomingTrace:
    """Continues a task's incoming trace on a (forked) isolation scope without a transaction:
    the propagation context `Scope.generate_propagation_context(headers)` would set, made from
    the last parsed `sentry-trace`/`baggage` pair when the pair and the client are the same.
    Every task gets its own context (its own lazily made span id, its own baggage copy)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Any, str, str | None, PropagationContext] | None = None

    def continue_on(self, scope: Scope, client: BaseClient, headers: dict[str, str]) -> None:
        sentry_trace = headers.get(SENTRY_TRACE)
        if not _WORKER_CACHE or sentry_trace is None:
            # No trace to continue (or a header spelt otherwise, which sentry-sdk normalises).
            scope.generate_propagation_context(headers)
            return
        baggage = headers.get(BAGGAGE)
        last = self._last
        if (
            last is not None
            and last[0] is client
            and last[1] == sentry_trace
            and last[2] == baggage
        ):
            template = last[3]
        else:
            # Parsed against the current client (its org id and strict continuation decide
            # whether the trace is continued), hence the client in the key.
            template = PropagationContext.from_incoming_data(headers)
            self._last = (client, sentry_trace, baggage, template)
        scope._propagation_context = _copy(template)


def _copy(template: PropagationContext) -> PropagationContext:
    # `_trace_id`, not `trace_id`: the property would make one up in a template that did not
    # continue a trace, and every task would share it. The span id is left to be made per task.
    bag = template.baggage
    return PropagationContext(
        trace_id=template._trace_id,
        parent_span_id=template.parent_span_id,
        parent_sampled=template.parent_sampled,
        baggage=None
        if bag is None
        else Baggage(dict(bag.sentry_items), bag.third_party_items, bag.mutable),
    )
