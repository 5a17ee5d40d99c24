"""`SyncRedisStorage` and `AsyncRedisStorage`: task records as Redis hashes.

A record lives in `{p}:task:{id}` (see `keys.py`), has no TTL while its task is queued or
running and `config.result_ttl` once final. Indexes by status and task name make listings and
counts cheap without KEYS; a result waiter blocks on `{p}:done:{id}`, which the final write
fills, so it wakes when the result is written, not on a timer.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from qtasks._drive import Flow
from qtasks.redis._component import RedisComponent
from qtasks.redis.connection import (
    ASYNC,
    Health,
    RedisConnection,
    guarded,
    persist,
    pipeline_step,
    text,
)
from qtasks.redis.keys import STATUSES, RecordKeys
from qtasks.redis.protocol import Protocol
from qtasks.storages.base import AsyncStorage, BaseStorage, SyncStorage

PAGE = 500
REQUIRED = ("status", "uuid", "task_name")


def _mapping(reply: Any) -> dict[str, str] | None:
    """An HGETALL reply as a record mapping, or None (missing, or not a record: a key written
    by something else never breaks a listing)."""
    if not reply:
        return None
    mapping = {text(k): text(v) for k, v in dict(reply).items()}
    return mapping if all(k in mapping for k in REQUIRED) else None


class RedisStorageBase(RedisComponent, BaseStorage):
    def __init__(
        self,
        name: str = "QueueTasks",
        url: str | None = None,
        global_config: Any = None,
        *,
        redis_connect: Any = None,
        prefix: str | None = None,
        queue_process: str | None = None,
        connection: RedisConnection | None = None,
        **kwargs: Any,
    ) -> None:
        # `queue_process` (1.7's processing zset) is accepted and unused: leases replace it.
        self.url = self._connect(url, redis_connect, connection)
        self.record_keys = RecordKeys(prefix or name)
        if global_config is None:
            global_config = self._default_global_config(name, prefix)
        super().__init__(name=name, global_config=global_config, **kwargs)
        self._health = Health(self.log)

    def _default_global_config(self, name: str, prefix: str | None) -> Any:
        from qtasks.redis.config import AsyncRedisGlobalConfig, SyncRedisGlobalConfig

        cls = AsyncRedisGlobalConfig if self.flavour.is_async else SyncRedisGlobalConfig
        return cls(name=name, url=self.url, prefix=prefix, connection=self.connection)

    @property
    def _protocol(self) -> Protocol:
        # Storage calls use only the record half of the protocol; built once.
        cached = self.__dict__.get("_protocol_cache")
        if cached is None or cached.records is not self.record_keys:
            from qtasks.redis.keys import BrokerKeys

            cached = Protocol(BrokerKeys(self.record_keys.prefix), self.record_keys)
            self.__dict__["_protocol_cache"] = cached
        return cached

    # -- primitives -------------------------------------------------------------------------
    def _put(self, uuid: str, mapping: dict[str, str]) -> Any:
        call = self._protocol.put(uuid, mapping, self._ttl_ms())
        return self._run(guarded(self._step_flow(self._script(*call)), "storage put"))

    def _update(self, uuid: str, fields: dict[str, str]) -> Any:
        return self._run(guarded(self._update_flow_(uuid, fields), "storage update"))

    def _update_steps(self, uuid: str, fields: dict[str, str]) -> Flow[Any]:
        return guarded(self._update_flow_(uuid, fields), "storage update")

    def _update_flow_(self, uuid: str, fields: dict[str, str]) -> Flow[bool]:
        # Workers mark tasks `process` through here: ride out a short outage rather than lose
        # the task's lease to it; producers get a typed error after a few seconds. Updates made
        # together (the marks of a claimed batch) share one round trip (`_batch.py`).
        reply = yield from persist(
            self._batched(self._pack_updates, (uuid, fields)),
            min(5.0, self.config.lease_timeout / 2),
            self.flavour.sleep,
            self._health,
            "record update",
        )
        if int(reply) < 0:
            self.log.warning(
                "refused to reopen final record %s with status %r", uuid, fields.get("status")
            )
        return int(reply) > 0

    def _update_begin(self, uuid: str, fields: dict[str, str]) -> Flow[Any]:
        # Write-behind: the update joins the next batch of writes (`_batch`) and the caller
        # goes on (a sync caller sends it itself when no batch is in flight); `_update_end`
        # collects the reply.
        batcher = self.connection.batcher(self.config.socket_timeout)
        # A `process` mark is dropped if the task's final write joins the same batch.
        key = ("mark", uuid) if fields.get("status") == "process" else None
        pending = batcher.behind(self._pack_updates, (uuid, fields), key)
        return (yield partial(_Behind, partial(batcher.collect, pending), uuid))

    def _update_end(self, handle: Any) -> Flow[None]:
        if handle is None:
            return
        try:
            reply = yield handle.reply
        except Exception as exc:  # noqa: BLE001 - see below
            # The final write came after this update (it was submitted later) and it is what
            # counts; a lost `process` mark only ever showed the status a little late.
            self.log.debug("process mark of %s not written: %s", handle.uuid, exc)
            return
        if int(reply) < 0:
            self.log.warning("refused to reopen final record %s with status 'process'", handle.uuid)

    def _pack_updates(self, items: list[tuple[str, dict[str, str]]]) -> Any:
        return self._protocol.update_many(items, self._ttl_ms())

    def _get(self, uuid: str) -> Any:
        return self._run(guarded(self._get_flow_(uuid), "storage get"))

    def _get_flow_(self, uuid: str) -> Flow[dict[str, str] | None]:
        return _mapping((yield partial(self.client.hgetall, self.record_keys.record(uuid))))

    def _all(self) -> Any:
        return self._run(
            guarded(self._page_flow(self.record_keys.index_all, None, 0, None), "get_all")
        )

    def _list(self, status: str | None, task_name: str | None, limit: int, offset: int) -> Any:
        """Live tasks first (latest change first), then the most recently finished."""
        if task_name is not None:
            index = self.record_keys.index_name(task_name)
        elif status is not None:
            index = self.record_keys.index_status(status)
        else:
            index = self.record_keys.index_all
        wanted = status if task_name is not None else None
        return self._run(guarded(self._list_flow_(index, limit, offset, wanted), "list"))

    def _list_flow_(
        self, index: str, limit: int, offset: int, status: str | None
    ) -> Flow[list[dict[str, str]]]:
        yield self._script("PRUNE", [index], [])
        return (yield from self._page_flow(index, limit, offset, status))

    def _page_flow(
        self, index: str, limit: int | None, offset: int, status: str | None
    ) -> Flow[list[dict[str, str]]]:
        """Records of `index`, newest first, in pages; entries whose record expired are
        dropped from the index on the way."""
        client = self.client
        out: list[dict[str, str]] = []
        skipped = start = 0
        while limit is None or len(out) < limit:
            ids = [
                text(x) for x in (yield partial(client.zrevrange, index, start, start + PAGE - 1))
            ]
            if not ids:
                break
            replies = yield pipeline_step(
                client, [("hgetall", (self.record_keys.record(i),)) for i in ids]
            )
            gone = []
            for task_id, reply in zip(ids, replies, strict=True):
                mapping = _mapping(reply)
                if mapping is None:
                    gone.append(task_id)
                elif status is None or mapping.get("status") == status:
                    if skipped < offset:
                        skipped += 1
                    else:
                        out.append(mapping)
            if gone:
                yield partial(client.zrem, index, *gone)
            start += len(ids) - len(gone)
        return out if limit is None else out[:limit]

    def _wait_final(self, uuid: str, timeout: float, statuses: frozenset[str]) -> Any:
        return self._run(guarded(self._wait_final_flow(uuid, timeout, statuses), "wait"))

    def _wait_steps(
        self, uuid: str, timeout: float, statuses: frozenset[str], fresh: bool
    ) -> Flow[Any]:
        return guarded(self._wait_final_flow(uuid, timeout, statuses, fresh), "wait")

    def _wait_final_flow(
        self, uuid: str, timeout: float, statuses: frozenset[str], fresh: bool = False
    ) -> Flow[dict[str, str] | None]:
        client = self.client
        record, done = self.record_keys.record(uuid), self.record_keys.done(uuid)
        deadline = time.monotonic() + timeout
        # A task this caller just enqueued is not final yet: block on its token at once (a
        # final write in between leaves the token, so the block returns at once).
        if not fresh:
            mapping = _mapping((yield partial(client.hgetall, record)))
            if mapping is not None and mapping.get("status") in statuses:
                return mapping
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait = max(0.01, round(min(remaining, self.config.block_timeout), 3))
            # BLMOVE onto itself leaves the token in place, so every waiter wakes. The record
            # read is pipelined behind it: Redis keeps a blocked client's next commands in its
            # buffer and runs them as soon as the block returns, so waking costs no extra round
            # trip.
            token, reply = yield pipeline_step(
                client, [("blmove", (done, done, wait, "RIGHT", "LEFT")), ("hgetall", (record,))]
            )
            mapping = _mapping(reply)
            if mapping is not None and mapping.get("status") in statuses:
                return mapping
            if token is not None:
                # A token but no matching record: a stale token (the record was replaced or
                # removed). Drop it; the next final write pushes a fresh one.
                yield partial(client.delete, done)

    def _delete_finished(self) -> Any:
        return self._run(guarded(self._delete_finished_flow_(), "delete_finished"))

    def _delete_finished_flow_(self) -> Flow[int]:
        client = self.client
        keys = self.record_keys
        deleted = 0
        for status in ("success", "error", "cancel", "retry"):
            index = keys.index_status(status)
            while True:
                ids = [text(x) for x in (yield partial(client.zrange, index, 0, PAGE - 1))]
                if not ids:
                    break
                # Their names first: each record is in its task name's index too.
                names = yield pipeline_step(
                    client, [("hget", (keys.record(i), "task_name")) for i in ids]
                )
                by_name: dict[str, list[str]] = {}
                for task_id, name in zip(ids, names, strict=True):
                    if name is not None:
                        by_name.setdefault(text(name), []).append(task_id)
                commands: list[tuple[str, tuple[Any, ...]]] = [
                    ("delete", (keys.record(i),)) for i in ids
                ]
                commands += [
                    ("delete", tuple(keys.done(i) for i in ids)),
                    ("zrem", (index, *ids)),
                    ("zrem", (keys.index_all, *ids)),
                ]
                commands += [
                    ("zrem", (keys.index_name(name), *members)) for name, members in by_name.items()
                ]
                replies = yield pipeline_step(client, commands)
                deleted += sum(int(r) for r in replies[: len(ids)])
        return deleted

    def _flush(self) -> Any:
        return self._run(
            guarded(
                self._scan_delete_flow(self.record_keys.prefix, self.record_keys.families), "flush"
            )
        )

    def _counts(self) -> Any:
        return self._run(guarded(self._count_flow(), "counts"))

    def _count_flow(self) -> Flow[dict[str, int]]:
        reply = yield self._script("COUNT", self.record_keys.indexes(), [])
        return {status: int(n) for status, n in zip(STATUSES, reply[1:], strict=True) if int(n)}

    def _start(self) -> Any:
        return self._run(self._acquire_flow())

    def _stop(self) -> Any:
        return self._run(self._release_flow())


class _Behind:
    """A write sent behind: the step that collects its reply, taken when asked for."""

    __slots__ = ("reply", "uuid")

    def __init__(self, reply: Any, uuid: str) -> None:
        self.reply = reply
        self.uuid = uuid


class SyncRedisStorage(RedisStorageBase, SyncStorage):
    """Redis storage for the sync app (`redis.Redis`)."""


class AsyncRedisStorage(RedisStorageBase, AsyncStorage):
    """Redis storage for the asyncio app (`redis.asyncio.Redis`)."""

    flavour = ASYNC
