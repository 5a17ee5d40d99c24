"""Write-behind batches (`qtasks.redis._batch`) and command packing (`_wire`), on a real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio.connection import Connection as PlainConnection
from redis.connection import Connection as SyncConnection
from redis.exceptions import DataError
from redis_test_support import async_app, sync_app

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


ARGS: list[tuple[Any, ...]] = [
    ("EVALSHA", "ab" * 20, 2, "tq:msg", b"tq:\xff", "caf\u00e9 \u2603", 0, -7, 2**53, 1.5, ""),
    ("CONFIG GET", "maxmemory"),  # a command name carrying an argument
    (b"CLIENT LIST",),
    ("SET", "k", bytearray(b"v"), memoryview(b"w")),
]


CONNECTIONS = [PlainConnection, SyncConnection]


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


async def test_async_clients_pack_with_hiredis_when_installed(redis_url: str) -> None:
    app = async_app(redis_url)
    pool = app.broker.client.connection_pool
    assert issubclass(pool.connection_class, PlainConnection)
    packs_fast = pool.connection_class.pack_command is not PlainConnection.pack_command
    assert packs_fast is (_PACK is not None)
    assert await app.broker.client.ping() is True


def test_sync_clients_pack_with_hiredis_when_installed(redis_url: str) -> None:
    app = sync_app(redis_url)
    pool = app.broker.client.connection_pool
    assert issubclass(pool.connection_class, SyncConnection)
    packs_fast = pool.connection_class.pack_command is not SyncConnection.pack_command
    assert packs_fast is (_PACK is not None)
    assert app.broker.client.ping() is True
