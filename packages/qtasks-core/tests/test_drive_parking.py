"""`run_parking`: a sync flow parks on an unsettled `Pending` and is resumed where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from qtasks._drive import Flow, Pending, resume_parked, run_parking, run_sync


class Reply(Pending):
    """A reply settled by the test (the thread batcher's slot in production)."""

    __slots__ = ("callback", "done", "ok", "value")

    def __init__(self) -> None:
        self.done = False
        self.ok = False
        self.value: Any = None
        self.callback: Callable[[], None] | None = None

    def settle(self, ok: bool, value: Any) -> None:
        self.done, self.ok, self.value = True, ok, value
        if self.callback is not None:
            self.callback()

    def wait(self) -> Any:
        assert self.done, "run_sync waits here; the test settles first"
        return self.result()

    def result(self) -> Any:
        if not self.ok:
            raise self.value
        return self.value

    def on_settle(self, callback: Callable[[], None]) -> bool:
        if self.done:
            return False
        self.callback = callback
        return True


def write_then_note(reply: Reply, log: list[str]) -> Flow[str]:
    log.append("before")
    try:
        value = yield lambda: reply
    except RuntimeError as exc:
        log.append(f"caught {exc}")
        return "failed"
    log.append(f"got {value}")
    return "done"


def test_a_flow_parks_on_an_unsettled_reply_and_resumes_with_its_value() -> None:
    reply, log, parked = Reply(), [], []
    flow = write_then_note(reply, log)
    assert run_parking(flow, parked.append) == (False, None)
    assert log == ["before"] and parked == []  # the thread is free; nothing resumed yet
    reply.settle(True, "ok")
    assert parked == [reply]  # the settling side hands the reply back, once
    assert resume_parked(flow, parked.append, reply) == (True, "done")
    assert log == ["before", "got ok"]


def test_an_error_reply_is_raised_inside_the_resumed_flow() -> None:
    reply, log, parked = Reply(), [], []
    flow = write_then_note(reply, log)
    run_parking(flow, parked.append)
    reply.settle(False, RuntimeError("connection lost"))
    assert resume_parked(flow, parked.append, reply) == (True, "failed")
    assert log == ["before", "caught connection lost"]


@pytest.mark.parametrize("ok", [True, False])
def test_a_settled_reply_never_parks_and_run_sync_takes_it_too(ok: bool) -> None:
    value: Any = "ok" if ok else RuntimeError("refused")
    for drive in (lambda f: run_parking(f, pytest.fail)[1], run_sync):
        reply, log = Reply(), []
        reply.settle(ok, value)
        assert drive(write_then_note(reply, log)) == ("done" if ok else "failed")
