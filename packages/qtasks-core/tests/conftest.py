"""Fixtures for core's tests: one behavioural suite runs against the sync and asyncio apps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from qtasks.testing.harness import Harness


@pytest.fixture(params=["sync", "async"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = Harness(request.param)
    yield h
    if h.app.starter.started:
        await h.stop(0)
    for cleanup in h.cleanups:
        cleanup()
