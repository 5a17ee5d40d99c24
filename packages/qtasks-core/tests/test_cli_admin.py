"""The CLI's administration helpers against the in-memory broker."""

from __future__ import annotations

import time

import pytest

from qtasks import QueueTasks
from qtasks.cli import admin


def test_dead_retry_without_ids_takes_every_dead_letter_page_by_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It listed at most 10,000 (one call), fewer than `dead_letter_limit` may keep.
    monkeypatch.setattr(admin, "DEAD_PAGE", 2)
    worker = QueueTasks(name="cli-dead", broker_url="memory://cli-dead")
    producer = QueueTasks(name="cli-dead", broker_url="memory://cli-dead")

    @producer.task(name="ghost")
    def ghost() -> None:
        return None

    queued = {str(producer.add_task("ghost").uuid) for _ in range(5)}
    with worker:  # it does not know "ghost": every task is dead-lettered
        deadline = time.monotonic() + 5
        while worker.broker.stats()["dead"] < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert set(admin._every_dead_id(worker)) == queued


def test_stats_inspect_without_a_target_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qtasks.cli.main import main

    # Before: it printed the live figures, as `stats` does.
    assert main(["-A", "nowhere:app", "stats", "inspect"]) == 2
    assert "inspect targets" in capsys.readouterr().err
