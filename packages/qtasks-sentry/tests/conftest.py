"""Fixtures for qtasks-sentry: a Sentry client whose transport keeps envelopes in memory."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.scope import Scope
from sentry_sdk.transport import Transport

from qtasks import hookimpl
from qtasks.testing.harness import Harness

DSN = "https://public@sentry.example/1"


class CapturingTransport(Transport):
    """Keeps every envelope; `wait` blocks until a predicate over them holds (no sleeps)."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []
        self._changed = threading.Condition()

    def capture_envelope(self, envelope: Envelope) -> None:
        with self._changed:
            self.envelopes.append(envelope)
            self._changed.notify_all()

    def events(self) -> list[dict[str, Any]]:
        return [e for e in (env.get_event() for env in self.envelopes) if e is not None]

    def transactions(self) -> list[dict[str, Any]]:
        return [t for t in (env.get_transaction_event() for env in self.envelopes) if t is not None]

    def wait(self, predicate: Callable[[CapturingTransport], Any], timeout: float = 5.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self), timeout), "no such envelope"

    async def wait_async(self, predicate: Callable[[CapturingTransport], Any]) -> None:
        await asyncio.to_thread(self.wait, predicate)


@pytest.fixture
def sentry_init() -> Iterator[Callable[..., CapturingTransport]]:
    """`sentry_init(**options)` starts a client with a capturing transport; reset afterwards."""

    def init(**options: Any) -> CapturingTransport:
        transport = CapturingTransport()
        sentry_sdk.init(dsn=DSN, transport=transport, **options)
        return transport

    yield init
    sentry_sdk.get_client().close()
    Scope.get_global_scope().set_client(None)
    # Producers here enqueue from the process's root scopes: do not hand their breadcrumbs on
    # to the next test.
    Scope.get_isolation_scope().clear_breadcrumbs()
    Scope.get_current_scope().clear_breadcrumbs()


@pytest.fixture(params=["sync", "async"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = Harness(request.param)
    yield h
    if h.app.starter.started:
        await h.stop(0)


class HeaderProbe:
    """The headers each execution's envelope carried, by task id."""

    def __init__(self) -> None:
        self.headers: dict[str, dict[str, str]] = {}

    @hookimpl
    def worker_execute_before(self, task_broker: Any) -> None:
        self.headers[task_broker.id] = dict(task_broker.headers)


@pytest.fixture
def probe(harness: Harness) -> HeaderProbe:
    """A `HeaderProbe` on the harness's app."""
    header_probe = HeaderProbe()
    harness.app.add_plugin(header_probe)
    return header_probe
