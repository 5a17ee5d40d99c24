"""The per-minute finished ring behind `stats()["finished_per_minute"]` (the web view's chart)."""

from __future__ import annotations

import redis
from redis_test_support import sync_app


def test_finished_per_minute_counts_the_last_hour_oldest_first(redis_url: str) -> None:
    app = sync_app(redis_url, name="tp")

    @app.task(name="noop")
    def noop(i: int) -> int:
        return i

    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    server_minute = int(admin.time()[0]) // 60
    # Finishes from 5 minutes ago and from a lap ago (61 minutes: the same field) are written
    # as the script writes them; only the first is within the hour.
    admin.hset(
        "tp:finished:m",
        mapping={
            str((server_minute - 5) % 60): f"{server_minute - 5}:7",
            str((server_minute - 61) % 60): f"{server_minute - 61}:9",
        },
    )
    app.start()
    try:
        tasks = [app.add_task("noop", i, timeout=5) for i in range(3)]
    finally:
        app.stop()
    assert all(t is not None and t.status == "success" for t in tasks)
    stats = app.broker.stats()
    per_minute = stats["finished_per_minute"]
    assert len(per_minute) == 60
    # The three finishes land in the current minute (or the one before, at a boundary).
    assert sum(per_minute[-2:]) == 3
    # Minute -61 shares its field with minute -1: the fresh finishes reset it when they fall
    # in minute -1, and minute -61 is never counted.
    assert sum(per_minute) == 3 + 7
    assert 7 in per_minute[-7:-5]  # minute -5 (-6 if a minute began since we read the clock)
    assert stats["finished_last_minute"] == 3
