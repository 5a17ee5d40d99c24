"""Broker semantics against a real redis-server: enqueue, claim, leases, reaper, dead letters."""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any

import pytest
import redis
from redis_test_support import sync_app, wait_for

from qtasks._drive import run_sync
from qtasks.exc import TaskOptionError
from qtasks.schemas.delivery import Delivery
from qtasks.schemas.envelope import Envelope


@pytest.fixture
def app(redis_url: str) -> Any:
    return sync_app(
        redis_url,
        lease_timeout=0.5,
        heartbeat_interval=0.1,
        max_recoveries=2,
        block_timeout=0.5,
        socket_timeout=2.0,
    )


@pytest.fixture
def admin(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def envs(broker: Any, *specs: tuple[str, int], queue: str = "default") -> list[Envelope]:
    return [broker.make_envelope("t", priority, args=[key], queue=queue) for key, priority in specs]


def ran(broker: Any, deliveries: list[Delivery]) -> None:
    """Start claimed tasks as a worker does: a suspect (one that lapsed before) gets its start
    made durable first, so that its next lapse counts as a crash."""
    for delivery in deliveries:
        if delivery.recoveries:
            run_sync(broker._mark_started_flow(delivery))
        broker.storage.add_process(broker.storage.get(delivery.envelope.id), 0)


def reaped(broker: Any, admin: redis.Redis) -> bool:
    """Run the reaper; True once no lease is held (returned or dead-lettered)."""
    broker.reap()
    return admin.zcard("QueueTasks:lease") == 0


def keys_of(deliveries: list[Delivery]) -> list[str]:
    return [d.envelope.args[0] for d in deliveries]


def test_enqueue_is_idempotent_by_id(app: Any, admin: redis.Redis) -> None:
    broker = app.broker
    env = broker.make_envelope("t", args=[1])
    broker.add_many([env])
    broker.add_many([env])  # a re-sent enqueue (lost reply, client retry)
    assert admin.zcard("QueueTasks:q:default") == 1
    assert admin.hget(f"QueueTasks:task:{env.id}", "status") == b"new"
    assert len(broker.claim("w", 10, 0.1, ["default"])) == 1
    assert broker.claim("w", 10, 0.1, ["default"]) == []


def test_bad_options_are_refused_before_anything_is_written(app: Any, admin: redis.Redis) -> None:
    # A priority of 1.5 or "1" used to be written, dead-lettered by the worker (which could not
    # read it back), and left a record that `app.get` failed on with a ValueError.
    app.config.enqueue_unknown_tasks = True
    for options in ({"priority": 1.5}, {"priority": "1"}, {"eta": "soon"}, {"headers": {"k": 1}}):
        with pytest.raises(TaskOptionError):
            app.enqueue("t", **options)
    with pytest.raises(TaskOptionError, match="priority must be an int, not NoneType"):
        app.broker.add("t", None)
    with pytest.raises(TaskOptionError):
        app.add_tasks([("t", (), {}, 1.5)])
    assert admin.dbsize() == 0


def test_priority_then_fifo_across_queues_in_one_batch(app: Any) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("a-low", 5), ("a-high", 1), ("a-mid", 3)))
    broker.add_many(envs(broker, ("b-high", 1), ("b-neg", -2), ("b-low", 5), queue="other"))
    broker.add_many(envs(broker, ("a-high2", 1)))
    got = broker.claim("w", 4, 0.1, ["default", "other"])
    assert keys_of(got) == ["b-neg", "a-high", "b-high", "a-high2"]
    assert keys_of(broker.claim("w", 10, 0.1, ["default", "other"])) == ["a-mid", "a-low", "b-low"]
    # a worker only sees its queues
    broker.add_many(envs(broker, ("c", 0), queue="third"))
    assert broker.claim("w", 10, 0.05, ["default"]) == []


def test_eta_is_held_in_redis_until_due(app: Any) -> None:
    broker = app.broker
    due = time.time() + 0.3
    broker.add_many([broker.make_envelope("t", args=["later"], eta=due)])
    got = broker.claim("w", 1, 2.0, ["default"])
    # Measured from the eta itself: a slow enqueue (a loaded machine) shortens the wait.
    late = time.time() - due
    assert keys_of(got) == ["later"]
    assert -0.005 <= late < 0.3, late


def test_idle_claim_is_woken_by_an_enqueue(app: Any) -> None:
    broker = app.broker
    out: dict[str, Any] = {}

    def consume() -> None:
        out["got"] = broker.claim("w", 1, 1.9, ["default"])
        out["at"] = time.monotonic()

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.2)  # let the consumer block first: this is the scenario under test
    sent = time.monotonic()
    broker.add_many(envs(broker, ("now", 0)))
    thread.join(3)
    assert keys_of(out["got"]) == ["now"]
    assert out["at"] - sent < 0.5, out["at"] - sent  # woken, not the 1.9 s block running out


def test_a_woken_claim_comes_in_the_round_trip_that_blocked(app: Any, admin: redis.Redis) -> None:
    broker = app.broker
    assert broker.claim("w", 5, 0.05, ["default"]) == []  # the queue is known to be empty
    pairs: list[Any] = []
    woken_claim = broker._woken_claim_flow

    def observed(*args: Any) -> Any:  # records what the BLPOP + CLAIM pair returned
        reply = yield from woken_claim(*args)
        pairs.append(reply)
        return reply

    broker._woken_claim_flow = observed
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(got=broker.claim("w", 5, 3, ["default"])))
    thread.start()
    wait_for(lambda: any(c["cmd"] == "blpop" for c in admin.client_list()))
    admin.config_resetstat()
    broker.add_many(envs(broker, ("a", 0), ("b", 0)))
    thread.join(5)
    assert keys_of(out["got"]) == ["a", "b"]
    # The claim ran in the pair, behind the block: one CLAIM after the enqueue.
    assert pairs and pairs[-1] is not None
    assert admin.info("commandstats")["cmdstat_evalsha"]["calls"] == 2  # ENQUEUE, CLAIM


def test_finish_is_fenced_by_the_lease_token(app: Any, admin: redis.Redis) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("x", 0)))
    (delivery,) = broker.claim("w", 1, 0.1, ["default"])
    model = app.broker.storage.get(delivery.envelope.id).evolve(status="success", returning=1)
    zombie = Delivery(delivery.envelope, "not-the-token", "w", delivery.claimed_at)
    assert broker.remove_finished_task(zombie, model.evolve(returning=666)) is False
    assert broker.remove_finished_task(delivery, model) is True
    # re-sent after a lost reply: recognised, still one record, not overwritten
    assert broker.remove_finished_task(delivery, model) is True
    record = app.get(delivery.envelope.id)
    assert record.status == "success" and record.returning == 1
    assert 0 < admin.pttl(f"QueueTasks:task:{delivery.envelope.id}") <= 86_400_000
    assert admin.zcard("QueueTasks:lease") == 0 and admin.hlen("QueueTasks:msg") == 0


def test_heartbeat_renews_leases_and_reports_lost_ones(app: Any, admin: redis.Redis) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("a", 0), ("b", 0)))
    a, b = broker.claim("w", 2, 0.1, ["default"])
    before = admin.zscore("QueueTasks:lease", a.envelope.id)
    lost = broker.heartbeat("w", {a.envelope.id: a.token, b.envelope.id: "stale"})
    assert lost == [b.envelope.id]
    assert admin.zscore("QueueTasks:lease", a.envelope.id) >= before


def test_reaper_returns_lapsed_leases_counting_recoveries(app: Any) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("r", 0)))
    (first,) = broker.claim("dead-worker", 1, 0.1, ["default"])
    wait_for(broker.reap, 3, "the lease to lapse and be reaped")
    record = app.get(first.envelope.id)
    assert record.status == "new" and record.recoveries == 1
    (second,) = broker.claim("w2", 1, 0.5, ["default"])
    assert second.envelope.id == first.envelope.id and second.token != first.token
    assert broker.remove_finished_task(first, record.evolve(status="success")) is False
    assert broker.remove_finished_task(second, record.evolve(status="success")) is True
    assert app.get(first.envelope.id).recoveries == 1  # Redis counts, not the worker's copy


def test_poison_is_dead_lettered_after_max_recoveries(app: Any, admin: redis.Redis) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("poison", 0)))
    for attempt in range(3):  # max_recoveries=2: the third lapse dead-letters it
        ran(broker, broker.claim(f"w{attempt}", 1, 1.0, ["default"]))
        wait_for(lambda: reaped(broker, admin), 3, "a lapse")
    assert broker.claim("w", 1, 0.1, ["default"]) == []
    (dead,) = broker.list_dead()
    assert dead.reason == "poison" and dead.task_name == "t" and '"poison"' in dead.sample
    record = app.get(dead.uuid)
    assert record.status == "error" and record.extra["dead_reason"] == "poison"
    assert record.recoveries == 2  # the third lapse condemned it
    assert "poison" in record.traceback and "3 times while it ran" in record.traceback


def test_claims_report_lapses_and_only_started_suspects_count_as_crashed(
    app: Any, admin: redis.Redis
) -> None:
    # Chaos C7's bystander: claimed (prefetched) by workers that a poison task killed, again and
    # again, but never started after its first lapse; it must not be dead-lettered as poison.
    broker = app.broker
    broker.add_many(envs(broker, ("bystander", 0)))
    for attempt in range(6):  # max_recoveries=2, and twice as many lapses
        (delivery,) = broker.claim(f"w{attempt}", 1, 1.0, ["default"])
        assert delivery.recoveries == attempt
        wait_for(lambda: reaped(broker, admin), 3, "a lapse")
    assert broker.list_dead() == []
    (delivery,) = broker.claim("w", 1, 0.5, ["default"])
    assert app.get(delivery.envelope.id).recoveries == 6  # every lapse is still counted
    # A start mark under a lease that is no longer the worker's does not count.
    stale = Delivery(delivery.envelope, "stale-token", "w")
    run_sync(broker._mark_started_flow(stale))
    assert admin.hget("QueueTasks:recov", f"s:{delivery.envelope.id}") is None
    # A finished task leaves no lapse count, crash count or start mark behind.
    run_sync(broker._mark_started_flow(delivery))
    assert (
        broker.remove_finished_task(
            delivery, app.get(delivery.envelope.id).evolve(status="success")
        )
        is True
    )
    assert admin.hlen("QueueTasks:recov") == 0


def test_lapses_beyond_the_cap_dead_letter_a_task_that_never_starts(
    app: Any, admin: redis.Redis
) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("never", 0)))
    for attempt in range(4 * 3 + 1):  # 4 x (max_recoveries + 1), then one more
        assert broker.claim(f"w{attempt}", 1, 1.0, ["default"])
        wait_for(lambda: reaped(broker, admin), 3, "a lapse")
    (dead,) = broker.list_dead()
    assert dead.reason == "poison" and "13 lapsed leases" in app.get(dead.uuid).traceback


MALFORMED = {
    "bad-bytes": b"\xff\xfe\x00",
    "truncated": b'{"v":1,"id":"truncated","task":"t","args":[',
    "not-object": b"[]",
    "wrong-type": b'{"v":1,"id":"wrong-type","task":"t","args":"nope"}',
    "deep": b'{"v":1,"id":"deep","task":"t","args":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "pickle": pickle.dumps({"v": 1, "id": "pickle", "task": "t"}),
    "other-id": b'{"v":1,"id":"someone-else","task":"t"}',
}


def test_malformed_entries_are_dead_lettered_and_the_worker_goes_on(
    app: Any, admin: redis.Redis
) -> None:
    broker = app.broker
    for task_id, payload in MALFORMED.items():
        admin.hset("QueueTasks:msg", task_id, payload)
        admin.zadd("QueueTasks:q:default", {task_id: 0})
    admin.hset("QueueTasks:msg", "huge", b"x" * (2 * 1024 * 1024))  # over max_payload_bytes
    admin.zadd("QueueTasks:q:default", {"huge": 0})
    admin.zadd("QueueTasks:q:default", {"orphan": 0})  # an entry without a payload
    broker.add_many(envs(broker, ("good", 5)))
    got = broker.claim("w", 20, 1.0, ["default"])
    assert keys_of(got) == ["good"]
    dead = {entry.uuid: entry for entry in broker.list_dead(limit=50)}
    assert set(dead) == {*MALFORMED, "huge", "orphan"}
    assert dead["bad-bytes"].reason == "decode_error"
    assert dead["truncated"].reason == "decode_error"
    assert dead["pickle"].reason == "decode_error"
    assert dead["not-object"].reason == "invalid_schema"
    assert dead["wrong-type"].reason == "invalid_schema"
    assert dead["deep"].reason == "invalid_schema"
    assert dead["other-id"].reason == "invalid_schema"
    assert dead["huge"].reason == "oversized"
    assert dead["orphan"].reason == "missing_payload"
    assert all(len(entry.sample.encode()) <= 1024 * 3 for entry in dead.values())
    assert len(dead["huge"].sample) <= 1024
    assert admin.zcard("QueueTasks:lease") == 1  # only "good" is held
    assert admin.hlen("QueueTasks:msg") == 1


def test_requeue_hands_a_task_back(app: Any) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("q", 0)))
    (delivery,) = broker.claim("w", 1, 0.1, ["default"])
    assert broker.requeue(delivery) is True
    assert broker.requeue(delivery) is False  # the lease is gone
    (again,) = broker.claim("w", 1, 0.5, ["default"])
    assert again.envelope.id == delivery.envelope.id
    assert app.get(delivery.envelope.id).recoveries == 0


def test_cancel_queued_and_running(app: Any) -> None:
    broker = app.broker
    queued, running = envs(broker, ("queued", 0), ("running", 9))
    broker.add_many([queued, running])
    heard: list[tuple[str, str | None]] = []
    broker.cancel_listeners.append(lambda uuid, reason: heard.append((uuid, reason)))
    broker.start()
    try:
        assert broker.cancel(queued.id, "not needed") == "cancelled"
        (delivery,) = broker.claim("w", 5, 0.2, ["default"])
        assert delivery.envelope.id == running.id  # the cancelled one never runs
        assert broker.cancel(running.id, "stop it") == "signalled"
        wait_for(lambda: heard, 3, "the pub/sub cancel notice")
        assert heard == [(running.id, "stop it")]
    finally:
        broker.stop()
    record = app.get(queued.id)
    assert record.status == "cancel" and record.cancel_reason == "not needed"
    assert broker.cancel(queued.id) == "final"
    assert broker.cancel("no-such-task") == "unknown"


def test_heartbeat_reports_cancels_missed_on_pub_sub(app: Any) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("c", 0)))
    (delivery,) = broker.claim("w", 1, 0.1, ["default"])
    heard: list[tuple[str, str | None]] = []
    broker.cancel_listeners.append(lambda uuid, reason: heard.append((uuid, reason)))
    assert broker.cancel(delivery.envelope.id) == "signalled"  # not started: no subscriber
    broker.heartbeat("w", {delivery.envelope.id: delivery.token})
    broker.heartbeat("w", {delivery.envelope.id: delivery.token})
    assert heard == [(delivery.envelope.id, None)]


def test_dead_letters_can_be_retried_and_purged(app: Any, admin: redis.Redis) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("d", 0)))
    for attempt in range(3):
        ran(broker, broker.claim(f"w{attempt}", 1, 1.0, ["default"]))
        wait_for(lambda: reaped(broker, admin), 3, "a lapse")
    (dead,) = broker.list_dead()
    assert broker.retry_dead(dead.uuid) is True
    assert broker.list_dead() == []
    assert app.get(dead.uuid).status == "new"
    (delivery,) = broker.claim("w", 1, 0.5, ["default"])
    assert delivery.envelope.id == dead.uuid and delivery.envelope.args == ["d"]
    assert broker.purge_dead() == 0


def test_purge_queue_and_stats(app: Any) -> None:
    broker = app.broker
    broker.add_many(envs(broker, ("a", 1), ("b", 1), ("c", 2)))
    broker.add_many([broker.make_envelope("t", args=["later"], eta=time.time() + 60)])
    broker.add_many(envs(broker, ("x", 0), queue="other"))
    broker.claim("w", 1, 0.1, ["other"])
    stats = broker.stats()
    assert stats["queues"]["default"] == {"ready": 3, "delayed": 1, "priorities": {"1": 2, "2": 1}}
    assert stats["processing"] == 1 and stats["dead"] == 0
    assert broker.purge_queue("default") == 4
    assert broker.stats()["queues"] == {}
    assert app.broker.storage.counts() == {"cancel": 4, "new": 1}
