"""Write-behind batches (`qtasks.redis._batch`) and command packing (`_wire`), on a real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio.connection import Connection as PlainConnection
from redis.connection import Connection as SyncConnection
from redis.exceptions import DataError
from redis_test_support import async_app, quick_only, sync_app

from qtasks.redis import _batch
from qtasks.redis._batch import SUPERSEDED
from qtasks.redis._wire import _PACK, _packing_class
from qtasks.schemas.task import new_record, to_mapping


async def test_a_process_mark_is_not_sent_when_its_final_write_joins_the_batch(
    redis_url: str,
) -> None:
    app = async_app(redis_url)
    broker, storage = app.broker, app.broker.storage
    await broker.add_many([broker.make_envelope("t", args=[k]) for k in ("quick", "slow")])
    quick, slow = await broker.claim("w", 2, 0.5, ["default"])
    batcher = broker.connection.batcher(app.config.socket_timeout)
    marked: list[str] = []

    def pack_updates(items: list[tuple[str, dict[str, str]]]) -> Any:
        marked.extend(uuid for uuid, _ in items)  # what actually goes to Redis
        return storage._pack_updates(items)

    def mark(delivery: Any) -> Any:
        uuid = delivery.envelope.id
        fields = {"status": "process", "updated_at": repr(time.time()), "worker": "w"}
        return batcher.call(pack_updates, (uuid, fields), ("mark", uuid))

    done = new_record(quick.envelope).evolve(status="success", returning=1)
    # One tick, as when a task's body returns at once: both marks, then one final write.
    replies = await asyncio.gather(
        mark(quick),
        mark(slow),
        batcher.call(
            broker._pack_finishes, (quick, to_mapping(done)), ("final", quick.envelope.id)
        ),
    )
    assert replies == [SUPERSEDED, 1, 1]
    assert marked == [slow.envelope.id]  # the quick task's mark never left the process
    assert (await app.get(quick.envelope.id)).status == "success"
    assert (await app.get(slow.envelope.id)).status == "process"


class _Recorded:
    """An async app's batcher with packers that record what actually goes to Redis."""

    def __init__(self, app: Any) -> None:
        self.app, self.broker = app, app.broker
        self.batcher = self.broker.connection.batcher(app.config.socket_timeout)
        self.marked: list[str] = []
        self.finished: list[str] = []

    def _pack_marks(self, items: list[tuple[str, dict[str, str]]]) -> Any:
        self.marked.extend(uuid for uuid, _ in items)
        return self.broker.storage._pack_updates(items)

    def _pack_finals(self, items: list[Any]) -> Any:
        self.finished.extend(delivery.envelope.id for delivery, _ in items)
        return self.broker._pack_finishes(items)

    async def claimed(self) -> Any:
        await self.broker.add_many([self.broker.make_envelope("t")])
        (delivery,) = await self.broker.claim("w", 1, 0.5, ["default"])
        return delivery

    def mark_behind(self, delivery: Any) -> asyncio.Future[Any]:
        uuid = delivery.envelope.id
        fields = {"status": "process", "updated_at": repr(time.time()), "worker": "w"}
        return self.batcher.behind(self._pack_marks, (uuid, fields), ("mark", uuid))

    def final(self, delivery: Any) -> Any:
        done = new_record(delivery.envelope).evolve(status="success", returning=1)
        item = (delivery, to_mapping(done))
        return self.batcher.call(self._pack_finals, item, ("final", delivery.envelope.id))


async def test_a_held_process_mark_is_replaced_by_its_final_write(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_batch, "MARK_DELAY", 30.0)  # the task ends well within it
    rec = _Recorded(async_app(redis_url))
    delivery = await rec.claimed()
    mark = rec.mark_behind(delivery)
    # The body waits on I/O (a round trip) and the loop turns: the mark is not sent alone.
    for _ in range(10):
        await asyncio.sleep(0)
    assert await rec.app.broker.client.ping() is True
    assert not mark.done() and rec.marked == []
    assert await rec.final(delivery) == 1
    assert await rec.batcher.collect(mark) == SUPERSEDED
    assert rec.marked == [] and rec.finished == [delivery.envelope.id]
    assert (await rec.app.get(delivery.envelope.id)).status == "success"


async def test_a_write_the_client_refuses_fails_alone_not_its_batch(redis_url: str) -> None:
    rec = _Recorded(async_app(redis_url))
    await rec.broker.add_many([rec.broker.make_envelope("t") for _ in range(3)])
    deliveries = await rec.broker.claim("w", 3, 0.5, ["default"])
    assert len(deliveries) == 3
    bad = deliveries[1]
    writes = []
    for delivery in deliveries:
        mapping = to_mapping(new_record(delivery.envelope).evolve(status="success"))
        if delivery is bad:
            mapping["returning"] = '"\udcff"'  # past the checks that stop it before this
        key = ("final", delivery.envelope.id)
        writes.append(rec.batcher.call(rec._pack_finals, (delivery, mapping), key))
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    ids = [d.envelope.id for d in deliveries]
    assert rec.finished == ids + ids  # packed as one batch, refused, then each alone
    assert isinstance(outcomes[1], UnicodeEncodeError)
    assert outcomes[0] == outcomes[2] == 1
    for delivery in deliveries:
        record = await rec.app.get(delivery.envelope.id)
        assert record.status == ("new" if delivery is bad else "success")


async def test_a_long_tasks_process_mark_goes_out_alone_after_the_mark_delay(
    redis_url: str,
) -> None:
    rec = _Recorded(async_app(redis_url))
    delivery = await rec.claimed()
    loop = asyncio.get_running_loop()
    made = loop.time()
    mark = rec.mark_behind(delivery)
    assert await asyncio.wait_for(mark, 10) == 1  # sent by the mark timer: nothing else writes
    assert loop.time() - made >= _batch.MARK_DELAY * 0.9
    assert rec.marked == [delivery.envelope.id]
    assert (await rec.app.get(delivery.envelope.id)).status == "process"


async def test_collecting_a_held_process_mark_sends_it_at_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_batch, "MARK_DELAY", 30.0)
    rec = _Recorded(async_app(redis_url))
    delivery = await rec.claimed()
    mark = rec.mark_behind(delivery)
    # Whoever waits for the mark's reply (a task that ended without a final write through the
    # batcher) does not wait out the delay.
    assert await asyncio.wait_for(rec.batcher.collect(mark), 10) == 1
    assert rec.marked == [delivery.envelope.id]


ARGS: list[tuple[Any, ...]] = [
    ("EVALSHA", "ab" * 20, 2, "tq:msg", b"tq:\xff", "caf\u00e9 \u2603", 0, -7, 2**53, 1.5, ""),
    ("CONFIG GET", "maxmemory"),  # a command name carrying an argument
    (b"CLIENT LIST",),
    ("SET", "k", bytearray(b"v"), memoryview(b"w")),
]


CONNECTIONS = [PlainConnection, SyncConnection]


@quick_only
@pytest.mark.skipif(_PACK is None, reason="hiredis is not installed")
@pytest.mark.parametrize("plain_class", CONNECTIONS, ids=["async", "sync"])
@pytest.mark.parametrize("args", ARGS, ids=lambda a: str(a[0]))
def test_hiredis_packing_sends_what_redis_py_would(
    args: tuple[Any, ...], plain_class: type
) -> None:
    plain = plain_class()
    fast = _packing_class(plain_class)()
    assert b"".join(fast.pack_command(*args)) == b"".join(
        bytes(part) for part in plain.pack_command(*args)
    )


@quick_only
@pytest.mark.skipif(_PACK is None, reason="hiredis is not installed")
@pytest.mark.parametrize("plain_class", CONNECTIONS, ids=["async", "sync"])
def test_hiredis_pipeline_packing_sends_what_redis_py_would(plain_class: type) -> None:
    plain = plain_class()
    fast = _packing_class(plain_class)()
    commands = ARGS * 3
    assert b"".join(fast.pack_commands(commands)) == b"".join(
        bytes(part) for part in plain.pack_commands(commands)
    )


@pytest.mark.skipif(_PACK is None, reason="hiredis is not installed")
@pytest.mark.parametrize("plain_class", CONNECTIONS, ids=["async", "sync"])
def test_hiredis_packing_refuses_what_redis_py_refuses(plain_class: type) -> None:
    fast = _packing_class(plain_class)()
    with pytest.raises(DataError):
        fast.pack_command("SET", "k", {"not": "encodable"})


@quick_only
async def test_async_clients_pack_with_hiredis_when_installed(redis_url: str) -> None:
    app = async_app(redis_url)
    pool = app.broker.client.connection_pool
    assert issubclass(pool.connection_class, PlainConnection)
    packs_fast = pool.connection_class.pack_command is not PlainConnection.pack_command
    assert packs_fast is (_PACK is not None)
    assert await app.broker.client.ping() is True


@quick_only
def test_sync_clients_pack_with_hiredis_when_installed(redis_url: str) -> None:
    app = sync_app(redis_url)
    pool = app.broker.client.connection_pool
    assert issubclass(pool.connection_class, SyncConnection)
    packs_fast = pool.connection_class.pack_command is not SyncConnection.pack_command
    assert packs_fast is (_PACK is not None)
    assert app.broker.client.ping() is True
