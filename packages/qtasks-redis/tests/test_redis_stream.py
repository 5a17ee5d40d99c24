"""Bulk enqueues streamed on one connection (`_stream.py`): order, a script missing from Redis,
a connection cut mid-stream; on both flavours."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import pytest
import redis

from qtasks import QueueTasks, hookimpl
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.exc import SerializationError
from qtasks.redis.broker import STREAM_CHUNK

N = STREAM_CHUNK * 7 + 13  # several streamed calls, the last one short


class CuttingProxy:
    """Forwards TCP to Redis; the first connection that sends more than `cut_after` bytes is
    closed at that point (both ways), later connections pass untouched."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.upstream = port
        self.cut_after = cut_after
        self.cut = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counts: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                sent += len(data)
                if counts and sent > self.cut_after and not self.cut.is_set():
                    self.cut.set()
                    raise OSError("cut")
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.server.close()


async def bulk(flavour: str, url: str) -> list[Any]:
    if flavour == "async":
        app: Any = AsyncQueueTasks(name="stream", broker_url=url)
        return list(await app.add_tasks([("t", (i,)) for i in range(N)]))
    sync_app = QueueTasks(name="stream", broker_url=url)
    return await asyncio.to_thread(sync_app.add_tasks, [("t", (i,)) for i in range(N)])


def queued_in_order(url: str) -> list[int]:
    """The queued tasks' first arguments, in claim order (score order)."""
    broker = QueueTasks(name="stream", broker_url=url).broker
    admin = redis.Redis.from_url(url)
    ids = [i.decode() for i in admin.zrange(broker.keys.ready("default"), 0, -1)]
    records = broker.storage.record_keys
    return [int(admin.hget(records.record(i), "args").decode()[1:-1]) for i in ids]


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_streamed_bulk_enqueue_keeps_every_task_in_order(
    flavour: str, redis_server: Any
) -> None:
    tasks = await bulk(flavour, redis_server.url)
    assert [t.args for t in tasks] == [(i,) for i in range(N)]
    assert queued_in_order(redis_server.url) == list(range(N))


class TagRecords:
    @hookimpl
    def broker_add_before(self, model: Any) -> dict[str, Any]:
        return {"model": model.evolve(extra={**model.extra, "tagged": model.args[0]})}


@pytest.mark.parametrize("plugin", [False, True], ids=["made-while-streaming", "made-first"])
async def test_a_streamed_bulk_returns_the_records_it_stored(
    flavour: str, plugin: bool, redis_server: Any
) -> None:
    # Without a plugin on the record, each record is made as its call is built; with one,
    # before anything is written. Either way the caller gets the stored records, in order.
    app: Any = (AsyncQueueTasks if flavour == "async" else QueueTasks)(
        name="stream", broker_url=redis_server.url
    )
    if plugin:
        app.add_plugin(TagRecords())
    calls = [("t", (i,)) for i in range(N)]
    if flavour == "async":
        tasks = await app.add_tasks(calls)
        stored = [await app.get(t.uuid) for t in tasks[:: STREAM_CHUNK - 1]]
    else:
        tasks = await asyncio.to_thread(app.add_tasks, calls)
        stored = [app.get(t.uuid) for t in tasks[:: STREAM_CHUNK - 1]]
    assert [t.args for t in tasks] == [(i,) for i in range(N)]
    assert stored == tasks[:: STREAM_CHUNK - 1]
    assert all(t._app is app for t in tasks)
    tags = [t.extra.get("tagged") for t in stored]
    assert tags == ([t.args[0] for t in stored] if plugin else [None] * len(stored))


async def test_a_script_missing_from_redis_is_loaded_and_its_calls_sent_again(
    flavour: str, redis_server: Any
) -> None:
    await bulk(flavour, redis_server.url)  # loads ENQUEUE
    redis.Redis.from_url(redis_server.url).script_flush()
    redis.Redis.from_url(redis_server.url).flushdb()
    await bulk(flavour, redis_server.url)
    assert queued_in_order(redis_server.url) == list(range(N))


async def test_a_connection_cut_mid_stream_still_files_each_task_once(
    flavour: str, redis_server: Any
) -> None:
    await bulk(flavour, redis_server.url)  # the script is loaded; the first calls' size known
    redis.Redis.from_url(redis_server.url).flushdb()
    # Two calls into the bulk (each call of 50 is about 29 KB), well before its end (210 KB).
    proxy = CuttingProxy(redis_server.port, cut_after=60_000)
    try:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        tasks = await bulk(flavour, url)
    finally:
        proxy.close()
    assert proxy.cut.is_set()
    assert len({t.uuid for t in tasks}) == N
    # Calls Redis ran before the cut were skipped when re-sent: no task is queued twice.
    assert queued_in_order(redis_server.url) == list(range(N))


@pytest.mark.parametrize(
    "bad",
    [object(), "\udcff"],  # not JSON; text UTF-8 refuses (a lone surrogate)
    ids=["not-json", "not-utf8"],
)
async def test_bad_input_late_in_a_streamed_bulk_writes_nothing(
    flavour: str, redis_server: Any, bad: Any
) -> None:
    # The tasks before it have no arguments: checked up front without being encoded (their
    # payloads are made while Redis files the calls before), and still nothing is written.
    calls: list[Any] = [("t",) for _ in range(N)]
    calls[N - 5] = ("t", (bad,))  # found after several streamed calls' worth
    if flavour == "async":
        app: Any = AsyncQueueTasks(name="stream", broker_url=redis_server.url)
        with pytest.raises(SerializationError):
            await app.add_tasks(calls)
    else:
        sync_app = QueueTasks(name="stream", broker_url=redis_server.url)
        with pytest.raises(SerializationError):
            await asyncio.to_thread(sync_app.add_tasks, calls)
    assert redis.Redis.from_url(redis_server.url).dbsize() == 0
