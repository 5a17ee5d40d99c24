"""The Lua scripts and the protocol in isolation: declared keys, re-sent calls, exact scores."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import redis
from redis_test_support import sync_app, wait_for

from qtasks.redis.keys import PRIORITY_LIMIT
from qtasks.redis.scripts import SOURCES
from qtasks.schemas.task import to_mapping

# Variables that the scripts fill from KEYS (or pass on from KEYS as function parameters).
KEY_VARIABLES = {
    "rec",
    "done",
    "name_key",
    "key",
    "hash",
    "ttls",
    "dead",
    "info",
    "ready",
    "delayed",
    "seq_key",
    "recov",
}
NO_KEY_COMMANDS = {"TIME", "PUBLISH"}
# `redis.call('CMD', key, ...)` and gathered writes, `g:add('CMD', key, ...)`.
CALL = re.compile(r"(?:redis\.call|\w+:add)\('(\w+)'(?:,\s*([^,)]+))?")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_scripts_touch_only_keys_they_receive(name: str) -> None:
    """Every key a script touches comes from KEYS[] (so ACLs and clusters see them): no key
    name is built inside Lua."""
    source = SOURCES[name]
    for command, argument in CALL.findall(source):
        if command in NO_KEY_COMMANDS:
            continue
        first = argument.strip()
        assert first.startswith("KEYS[") or first in KEY_VARIABLES, (name, command, first)
    for variable in KEY_VARIABLES:
        for assigned in re.findall(rf"\blocal {variable}\b[^=\n]*=\s*([^\n]+)", source):
            assert "KEYS[" in assigned or assigned.startswith("false"), (name, assigned)


LUA_GLOBALS = {"tonumber", "tostring", "ipairs", "pairs", "unpack", "type", "error", "next"}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_scripts_define_every_function_they_call(name: str) -> None:
    """Each script carries only the prelude helpers it uses (`_with_helpers`); Redis would
    only find a missing one when the line calling it runs, so check the sources here."""
    source = re.sub(r"--[^\n]*", "", SOURCES[name])
    defined = set(re.findall(r"\blocal (?:function )?(\w+)", source))
    defined |= set(re.findall(r"\blocal \w+, (\w+)", source))
    for called in re.findall(r"(?<![\w.:])([a-z_]\w*)\(", source):
        if called in ("function", "if", "and", "or", "not", "return", "until", "while"):
            continue
        assert called in defined or called in LUA_GLOBALS, (name, called)


@pytest.fixture
def app(redis_url: str) -> Any:
    return sync_app(redis_url)


def test_a_re_sent_claim_returns_the_same_deliveries(app: Any, redis_url: str) -> None:
    broker = app.broker
    broker.add_many([broker.make_envelope("t", args=[i]) for i in range(5)])
    call = broker.protocol.claim("w", 3, 30_000, "fixed-claim-id", 1 << 20, ["default"], [])
    first = broker._call(call)()
    again = broker._call(call)()  # the first reply was "lost"; the client sends it again
    assert again[2:] == first[2:]
    admin = redis.Redis.from_url(redis_url)
    assert admin.zcard("QueueTasks:lease") == 3 and admin.zcard("QueueTasks:q:default") == 2


def test_extreme_priorities_keep_exact_order(app: Any) -> None:
    broker = app.broker
    top, bottom = -PRIORITY_LIMIT + 1, PRIORITY_LIMIT - 1
    specs = [("low", bottom), ("high", top), ("clamped", 10**9), ("zero", 0)]
    specs += [(f"fifo{i}", top) for i in range(20)]
    broker.add_many([broker.make_envelope("t", p, args=[k]) for k, p in specs])
    got = [d.envelope.args[0] for d in broker.claim("w", 50, 0.1, ["default"])]
    assert got == ["high", *[f"fifo{i}" for i in range(20)], "zero", "low", "clamped"]


def test_config_hash_expires_only_when_every_key_has_a_ttl(app: Any, redis_url: str) -> None:
    config = app.broker.storage.global_config
    admin = redis.Redis.from_url(redis_url)
    key = "QueueTasks:GlobalConfig:mixed"
    config._set("mixed", "a", 1, 30.0, False)
    config._set("mixed", "b", 2, 60.0, False)
    assert 59_000 < admin.pttl(key) <= 60_000  # with the last expiry
    config._set("mixed", "forever", 3, None, False)
    assert admin.pttl(key) == -1
    config._delete("mixed", "forever")
    assert admin.pttl(key) > 0
    config._set("mixed", "a", 1, 0.05, False)
    config._set("mixed", "b", 2, 0.05, False)
    wait_for(lambda: config.get_all("mixed") == {}, 2, "both keys to expire")
    assert admin.exists(key, "QueueTasks:GlobalConfig~ttl:mixed") == 0


def test_finish_keeps_the_recoveries_redis_counted(app: Any) -> None:
    broker, storage = app.broker, app.broker.storage
    env = broker.make_envelope("t")
    broker.add_many([env])
    (delivery,) = broker.claim("w", 1, 0.1, ["default"])
    redis.Redis(connection_pool=broker.client.connection_pool).hset("QueueTasks:recov", env.id, 2)
    model = storage.get(env.id).evolve(status="error", recoveries=0)
    assert broker.remove_finished_task(delivery, model)
    assert storage.get(env.id).recoveries == 2


def test_a_bulk_enqueue_larger_than_one_command_slice_keeps_fifo(app: Any, redis_url: str) -> None:
    # ENQUEUE writes shared keys in slices of 1,000 entries: 2,500 tasks take three.
    broker = app.broker
    created = broker.add_many([broker.make_envelope("t", args=[i]) for i in range(2500)])
    assert len(created) == 2500
    admin = redis.Redis.from_url(redis_url)
    assert admin.zcard(broker.keys.ready("default")) == 2500
    assert admin.hlen(broker.keys.msg) == 2500
    got: list[int] = []
    while len(got) < 2500:
        got += [d.envelope.args[0] for d in broker.claim("w", 500, 0.1, ["default"])]
    assert got == list(range(2500))


def test_a_mixed_bulk_enqueue_files_each_task_and_a_resend_is_a_no_op(
    app: Any, redis_url: str
) -> None:
    broker = app.broker
    later = time.time() + 3600
    envs = [
        broker.make_envelope("a", args=[0]),
        broker.make_envelope("b", args=[1], queue="other"),
        broker.make_envelope("a", args=[2], eta=later),
        broker.make_envelope("b", args=[3], queue="other", eta=later),
        broker.make_envelope("a", args=[4], queue="other"),
    ]
    broker.add_many(envs)
    admin = redis.Redis.from_url(redis_url)
    keys = broker.keys
    assert [admin.zcard(keys.ready(q)) for q in ("default", "other")] == [1, 2]
    assert [admin.zcard(keys.delayed(q)) for q in ("default", "other")] == [1, 1]
    records = [broker.storage.get(e.id) for e in envs]
    assert [(r.task_name, r.queue, r.status) for r in records] == [
        ("a", "default", "new"),
        ("b", "other", "new"),
        ("a", "default", "new"),
        ("b", "other", "new"),
        ("a", "other", "new"),
    ]
    # Sent again (a lost reply): every item is skipped and no key changes, not even the seq.
    before = {k: admin.dump(k) for k in admin.keys("QueueTasks:*")}
    again = broker.protocol.enqueue([(e, b"{}", {"status": "new"}) for e in envs])
    assert broker._call(again)() == [0, 0, 0, 0, 0]
    assert {k: admin.dump(k) for k in admin.keys("QueueTasks:*")} == before


def test_each_status_change_leaves_a_record_in_exactly_its_own_status_index(
    app: Any, redis_url: str
) -> None:
    """Writes that read the record's old status remove the id from that index only; a record
    whose status is unknown to them is swept from every other index."""
    broker, storage = app.broker, app.broker.storage
    admin = redis.Redis.from_url(redis_url)
    statuses = ("new", "process", "success", "error", "cancel", "retry")

    def holding(task_id: str) -> list[str]:
        return [s for s in statuses if admin.zscore(f"QueueTasks:idx:status:{s}", task_id)]

    env = broker.make_envelope("t")
    broker.add_many([env])
    assert holding(env.id) == ["new"]
    (delivery,) = broker.claim("w", 1, 0.1, ["default"])
    storage.update(name=env.id, mapping={"status": "process"})  # old status read, one ZREM
    assert holding(env.id) == ["process"]
    model = storage.get(env.id).evolve(status="success")
    assert broker.remove_finished_task(delivery, model)  # FINISH: the same
    assert holding(env.id) == ["success"]
    assert admin.zscore("QueueTasks:idx:all", env.id) is not None

    # A record whose status no index knows (written by hand): the next write sweeps them all.
    other = broker.make_envelope("t")
    broker.add_many([other])
    for s in ("error", "cancel"):
        admin.zadd(f"QueueTasks:idx:status:{s}", {other.id: 1})
    admin.hset(f"QueueTasks:task:{other.id}", "status", "odd")
    storage.update(name=other.id, mapping={"status": "process"})
    assert holding(other.id) == ["process"]


def test_an_id_queued_twice_is_claimed_once_and_finished_once_per_call(
    app: Any, redis_url: str
) -> None:
    """CLAIM and FINISH_MANY send their shared writes once per key at the end of the call
    (`gather`); an id met twice in one call must still be leased and written once."""
    broker = app.broker
    admin = redis.Redis.from_url(redis_url)
    env = broker.make_envelope("t")
    broker.add_many([env])
    # The same id also in a second queue (a duplicate entry, as a foreign writer could make).
    admin.zadd(broker.keys.ready("other"), {env.id: 2**40})  # after the original
    deliveries = broker.claim("w", 10, 0.1, ["default", "other"])
    assert [d.envelope.id for d in deliveries] == [env.id]
    assert admin.zcard(broker.keys.ready("default")) == admin.zcard(broker.keys.ready("other")) == 0
    (delivery,) = deliveries
    model = broker.storage.get(env.id).evolve(status="success")
    call = broker.protocol.finish_many(
        [(delivery, to_mapping(model)), (delivery, to_mapping(model))], 60_000, []
    )
    assert broker._call(call)() == [1, 2]  # the second is the same lease: already written
    assert admin.zcard("QueueTasks:lease") == 0 and admin.hlen("QueueTasks:owner") == 0
    assert broker.storage.get(env.id).status == "success"
