"""Administration of the Redis broker: stats, dead letters, queue purges (CLI, web view)."""

from __future__ import annotations

from functools import partial
from typing import Any

from qtasks._drive import Flow
from qtasks.memory.store import envelope_from_record
from qtasks.redis._component import RedisComponent
from qtasks.redis.connection import guarded, pipeline_step, text
from qtasks.redis.keys import BrokerKeys
from qtasks.redis.protocol import Protocol, parse_dead_info, parse_meta
from qtasks.schemas.delivery import DeadEntry
from qtasks.schemas.envelope import encode

PAGE = 500


class BrokerAdmin(RedisComponent):
    """The broker's optional admin primitives (`BaseBroker._stats`, `_list_dead`, ...)."""

    keys: BrokerKeys
    storage: Any

    @property
    def protocol(self) -> Protocol:
        raise NotImplementedError

    def _stats(self) -> Any:
        return self._run(guarded(self._stats_flow_(), "stats"))

    def _stats_flow_(self) -> Flow[dict[str, Any]]:
        queues = sorted(text(q) for q in (yield partial(self.client.smembers, self.keys.queues)))
        reply = yield self._call(self.protocol.stats(queues))
        return self.protocol.parse_stats(queues, list(reply))

    def _list_dead(self, limit: int, offset: int) -> Any:
        return self._run(guarded(self._list_dead_flow(limit, offset), "list_dead"))

    def _list_dead_flow(self, limit: int, offset: int) -> Flow[list[DeadEntry]]:
        if limit <= 0:
            return []
        ids = [
            text(x)
            for x in (
                yield partial(self.client.zrevrange, self.keys.dead, offset, offset + limit - 1)
            )
        ]
        if not ids:
            return []
        values = yield partial(self.client.hmget, self.keys.dead_info, ids)
        return [
            parse_dead_info(task_id, value)
            for task_id, value in zip(ids, values, strict=True)
            if value is not None
        ]

    def _retry_dead(self, uuid: str) -> Any:
        return self._run(guarded(self._retry_dead_flow(uuid), "retry_dead"))

    def _retry_dead_flow(self, uuid: str) -> Flow[bool]:
        mapping = yield from self.storage._get_flow_(uuid)
        if mapping is None:
            return False  # the record expired (result_ttl): nothing left to re-run from
        env = envelope_from_record(uuid, mapping)
        payload = encode(env, self.config.max_payload_bytes)
        return bool(int((yield self._call(self.protocol.retry_dead(env, payload)))))

    def _purge_dead(self, uuid: str | None) -> Any:
        return self._run(
            guarded(self._step_flow(self._call(self.protocol.purge_dead(uuid))), "purge_dead")
        )

    def _purge_queue(self, queue: str) -> Any:
        return self._run(guarded(self._purge_queue_flow(queue), "purge_queue"))

    def _purge_queue_flow(self, queue: str) -> Flow[int]:
        removed = 0
        while True:
            ready, delayed = yield pipeline_step(
                self.client,
                [
                    ("zrange", (self.keys.ready(queue), 0, PAGE - 1)),
                    ("zrange", (self.keys.delayed(queue), 0, PAGE - 1)),
                ],
            )
            ids = [text(x) for x in (*ready, *delayed)]
            if not ids:
                return int(removed)
            # Their task names, for the per-name index the records leave (the script forgets
            # the meta with the queue entry).
            metas = yield partial(self.client.hmget, self.keys.meta, ids)
            names = [None if (m := parse_meta(meta)) is None else m[2] for meta in metas]
            removed += yield self._call(
                self.protocol.purge_queue(queue, ids, names, self._ttl_ms(), "purged")
            )
