"""Every timer trigger declared in `qtasks.hookspecs` fires, in each timer/app pairing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from apscheduler.triggers.date import DateTrigger

import qtasks.asyncio
from qtasks import QueueTasks, hookimpl
from qtasks.plugins.manager import triggers_of
from qtasks.timer import AsyncTimer, SyncTimer

TIMER_TRIGGERS = {"timer_start", "timer_stop", "timer_add_task_before", "timer_add_task_after"}


def soon() -> DateTrigger:
    return DateTrigger(datetime.now(timezone.utc) + timedelta(seconds=0.1))


def test_the_timer_component_declares_these_triggers() -> None:
    assert set(triggers_of("timer")) == TIMER_TRIGGERS


def make(flavour: str, url: str) -> Any:
    app = (qtasks.asyncio.QueueTasks if flavour == "async" else QueueTasks)(
        name="timer-triggers", broker_url=url
    )

    @app.task(name="report")
    def report(day: str = "mon") -> str:
        return day

    return app


@pytest.mark.parametrize(
    ("timer_cls", "flavour"),
    [
        (SyncTimer, "sync"),
        (AsyncTimer, "async"),
        (AsyncTimer, "sync"),
        (SyncTimer, "async"),
    ],
)
def test_every_timer_trigger_fires(
    timer_cls: Any, flavour: str, store_url: str, ledger: Any
) -> None:
    app = make(flavour, store_url)
    app.add_plugin(ledger, component="timer")  # no trigger_names: every timer trigger
    timer = timer_cls(app)
    timer.add_task("report", trigger=soon())
    if timer_cls is AsyncTimer:

        async def run() -> None:
            async with timer:
                assert await asyncio.to_thread(ledger.wait_enqueued, 1)

        asyncio.run(run())
    else:
        with timer:
            assert ledger.wait_enqueued(1)
    assert ledger.names() == set(triggers_of("timer"))
    order = [name for name, _ in ledger.fired]
    assert order == ["timer_start", "timer_add_task_before", "timer_add_task_after", "timer_stop"]
    before = dict(ledger.fired[1][1])
    assert before["timer"] is timer and before["task_name"] == "report"
    assert before["run_time"] == timer._schedules[before["schedule_id"]].trigger.run_date


def test_before_may_replace_priority_and_arguments(store_url: str, ledger: Any) -> None:
    app = make("sync", store_url)

    class Rewrite:
        @hookimpl
        def timer_add_task_before(self, kw: dict[str, Any]) -> dict[str, Any]:
            return {"priority": 7, "kw": {**kw, "day": "sun"}, "timer": "ignored"}

        @hookimpl
        def timer_add_task_after(self, task: Any) -> None:
            seen.append(task)

    seen: list[Any] = []
    app.add_plugin(Rewrite())
    app.add_plugin(ledger, component="timer")
    with SyncTimer(app) as timer:
        timer.add_task("report", trigger=soon())
        assert ledger.wait_enqueued(1)
    record = app.get(seen[0].uuid)
    assert record is not None
    assert record.priority == 7 and record.kwargs == {"day": "sun"}
