"""Fixtures for qtasks-timer's tests: a ledger of timer triggers to wait on (no sleeps)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from qtasks.plugins import BasePlugin


class Ledger(BasePlugin):
    """Records every timer trigger; tests wait on it instead of sleeping."""

    def __init__(self) -> None:
        super().__init__(name="ledger")
        self.fired: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def trigger(self, name: str, **kwargs: Any) -> None:
        with self._cond:
            self.fired.append((name, kwargs))
            self._cond.notify_all()

    def names(self) -> set[str]:
        with self._cond:
            return {name for name, _ in self.fired}

    def enqueued(self) -> list[tuple[datetime, Any]]:
        """`(scheduled run time, task)` of every enqueue, in order."""
        with self._cond:
            return [
                (kw["run_time"], kw["task"])
                for name, kw in self.fired
                if name == "timer_add_task_after"
            ]

    def wait(self, predicate: Callable[[Ledger], bool], timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def wait_enqueued(self, count: int, timeout: float = 5.0) -> bool:
        return self.wait(lambda ledger: len(ledger.enqueued()) >= count, timeout)


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def store_url() -> str:
    """A fresh in-memory store, so records of other tests never leak in."""
    return f"memory://timer-{uuid.uuid4().hex[:10]}"
