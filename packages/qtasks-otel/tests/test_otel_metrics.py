"""Metric values with the SDK's in-memory reader."""

from __future__ import annotations

import time
from typing import Any

from qtasks.testing.harness import Harness

Telemetry = Any  # the conftest fixture's type


def by_labels(points: list[Any], *keys: str) -> dict[tuple[Any, ...], Any]:
    return {tuple(dict(p.attributes).get(k) for k in keys): p for p in points}


async def test_counters_and_histograms(harness: Harness, telemetry: Telemetry) -> None:
    harness.app.add_plugin(telemetry.plugin())
    started: list[float] = []

    @harness.task(name="ok")
    def ok() -> None:
        started.append(time.time())

    @harness.task(name="bad", retry=1)
    def bad() -> None:
        raise RuntimeError("no")

    before = time.time()
    tasks = [
        await harness.add_task("ok"),
        await harness.add_task("ok"),
        await harness.add_task("bad"),
    ]
    enqueued = time.time()
    starting = time.time()  # no task can start before the worker does
    await harness.start()
    for task in tasks:
        await harness.call("wait", task.uuid, 5)

    sent = by_labels(telemetry.points("messaging.client.sent.messages"), "qtasks.task.name")
    # Producers' sends only: the retry the worker enqueued is not a send.
    assert {name: p.value for (name,), p in sent.items()} == {"ok": 2, "bad": 1}
    assert dict(sent[("ok",)].attributes) == {
        "messaging.system": "qtasks",
        "messaging.operation.name": "send",
        "messaging.destination.name": "default",
        "qtasks.task.name": "ok",
    }

    finished = by_labels(
        telemetry.points("qtasks.tasks.finished"),
        "qtasks.task.name",
        "qtasks.task.status",
        "error.type",
    )
    assert {k: p.value for k, p in finished.items()} == {
        ("ok", "success", None): 2,
        ("bad", "retry", "RuntimeError"): 1,
        ("bad", "error", "RuntimeError"): 1,
    }

    durations = by_labels(
        telemetry.points("messaging.process.duration"), "qtasks.task.name", "qtasks.task.status"
    )
    assert {k: p.count for k, p in durations.items()} == {
        ("ok", "success"): 2,
        ("bad", "retry"): 1,
        ("bad", "error"): 1,
    }
    ok_duration = durations[("ok", "success")]
    assert 0 <= ok_duration.min <= ok_duration.max < 5

    queued = by_labels(telemetry.points("qtasks.task.queued.duration"), "qtasks.task.name")
    assert queued[("ok",)].count == 2 and queued[("bad",)].count == 2
    # Both "ok" tasks waited from their enqueue to at least the worker's start, and not longer
    # than until they ran.
    assert queued[("ok",)].min >= starting - enqueued - 0.001
    assert queued[("ok",)].max <= max(started) - before + 0.001


async def test_queued_time_counts_from_eta(harness: Harness, telemetry: Telemetry) -> None:
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="later")
    def later() -> None:
        return None

    await harness.start()
    task = await harness.call("enqueue", "later", delay=0.3)
    assert (await harness.call("wait", task.uuid, 5)).status == "success"
    (point,) = telemetry.points("qtasks.task.queued.duration")
    # Waiting for the eta is not time spent queued.
    assert point.count == 1 and point.max < 0.3


async def test_sends_count_the_queue_the_caller_named(
    harness: Harness, telemetry: Telemetry
) -> None:
    # Before, `enqueue(queue=...)` was counted under the task's registered queue.
    harness.app.add_plugin(telemetry.plugin())

    @harness.task(name="job")
    def job() -> None:
        return None

    await harness.call("enqueue", "job", queue="other")
    await harness.add_task("job")
    sent = by_labels(
        telemetry.points("messaging.client.sent.messages"), "messaging.destination.name"
    )
    assert {queue: p.value for (queue,), p in sent.items()} == {"other": 1, "default": 1}
