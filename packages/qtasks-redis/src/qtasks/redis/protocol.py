"""The broker and storage protocol as pure code: which script, which KEYS and ARGV, and what the
reply means. No I/O here; the components run these calls through a sync or an async client.

A `Call` is `(script name, keys, args)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from qtasks.exc import ConfigError
from qtasks.redis.connection import raw, text
from qtasks.redis.keys import PRIORITY_LIMIT, BrokerKeys, RecordKeys
from qtasks.schemas.delivery import DeadEntry, Delivery
from qtasks.schemas.envelope import Envelope

Call = tuple[str, list[str], list[Any]]
_CACHE_LIMIT = 1024


def ms(seconds: float | None) -> int:
    """Seconds to whole milliseconds; None (no TTL) is 0, which the scripts read as none."""
    return 0 if seconds is None else max(1, int(seconds * 1000))


def clamp_priority(priority: int) -> int:
    return max(-PRIORITY_LIMIT + 1, min(PRIORITY_LIMIT - 1, int(priority)))


def check_queue(queue: str) -> str:
    if not queue or "\n" in queue:
        raise ConfigError(f"invalid queue name {queue!r}")
    return queue


def flat(mapping: dict[str, str]) -> list[str]:
    out: list[str] = []
    for pair in mapping.items():
        out += pair
    return out


def meta(env: Envelope) -> str:
    """`{p}:meta` value: what the reaper and requeue need without decoding the envelope."""
    return meta_text(clamp_priority(env.priority), env.queue, env.task)


def meta_text(priority: int, queue: str, task: str) -> str:
    return f"{priority}\n{queue}\n{task}"


def parse_meta(value: Any) -> tuple[int, str, str] | None:
    parts = text(value).split("\n", 2)
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), parts[1], parts[2]
    except ValueError:
        return None


@dataclass(frozen=True)
class Protocol:
    keys: BrokerKeys
    records: RecordKeys

    # -- enqueue ----------------------------------------------------------------------------
    def enqueue(self, items: list[tuple[Envelope, bytes, dict[str, str]]]) -> Call:
        queues = list(dict.fromkeys(env.queue for env, _, _ in items))
        index = {q: i for i, q in enumerate(queues)}
        keys = list(self._enqueue_keys(tuple(queues)))
        args: list[Any] = [len(queues), len(items), *queues]
        record, index_name = self.records.record, self._index_name
        for env, payload, mapping in items:
            priority = clamp_priority(env.priority)
            keys += (record(env.id), index_name(mapping.get("task_name", env.task)))
            args += (
                env.id,
                payload,
                meta_text(priority, env.queue, env.task),
                priority,
                "" if env.eta is None else ms(env.eta),
                index[env.queue],
                mapping.get("status", "new"),
                len(mapping),
                *flat(mapping),
            )
        return "ENQUEUE", keys, args

    def _enqueue_keys(self, queues: tuple[str, ...]) -> tuple[str, ...]:
        """ENQUEUE's keys before the per-item ones; the same for every call on `queues`."""
        cache = self._queue_keys
        found = cache.get(queues)
        if found is None:
            for q in queues:
                check_queue(q)
            found = (self.keys.msg, self.keys.meta, self.keys.seq, self.keys.queues)
            found += tuple(self.records.indexes())
            for q in queues:
                found += (self.keys.ready(q), self.keys.delayed(q), self.keys.wake(q))
            if len(cache) < _CACHE_LIMIT:
                cache[queues] = found
        return found

    def _index_name(self, task_name: str) -> str:
        cache = self._name_keys
        found = cache.get(task_name)
        if found is None:
            found = self.records.index_name(task_name)
            if len(cache) < _CACHE_LIMIT:
                cache[task_name] = found
        return found

    # A handful of entries per app; capped for apps that make queue or task names up per call.
    @cached_property
    def _queue_keys(self) -> dict[tuple[str, ...], tuple[str, ...]]:
        return {}

    @cached_property
    def _name_keys(self) -> dict[str, str]:
        return {}

    # -- claim ------------------------------------------------------------------------------
    def claim(
        self,
        worker_id: str,
        limit: int,
        lease_ms: int,
        claim_id: str,
        max_bytes: int,
        queues: list[str],
        spent: list[str],
    ) -> Call:
        keys = [*self.keys.task_state(), self.keys.seq, self.keys.claim_memo(claim_id)]
        for q in queues:
            keys += (self.keys.ready(q), self.keys.delayed(q), self.keys.wake(q))
        return (
            "CLAIM",
            [*keys, *spent],
            [worker_id, limit, lease_ms, claim_id, max_bytes, len(queues), len(spent)],
        )

    @staticmethod
    def parse_claim(
        reply: list[Any],
    ) -> tuple[int, int, list[tuple[str, str, int, str, bytes, int]]]:
        """-> (server now ms, next eta ms or -1,
        [(id, token, queue index, kind, data, lapsed leases)])."""
        now, next_eta = int(reply[0]), int(reply[1])
        entries = []
        for i in range(2, len(reply), 6):
            task_id, token, q, kind, data, lapses = reply[i : i + 6]
            entries.append(
                (
                    text(task_id),
                    text(token),
                    int(q),
                    text(kind),
                    raw(data) if data is not None else b"",
                    int(lapses),
                )
            )
        return now, next_eta, entries

    def started(self, delivery: Delivery) -> Call:
        args = [delivery.envelope.id, delivery.worker_id, delivery.token]
        return "STARTED", self.keys.task_state(), args

    # -- leases -----------------------------------------------------------------------------
    def heartbeat(self, worker_id: str, leases: dict[str, str], lease_ms: int) -> Call:
        args: list[Any] = [worker_id, lease_ms]
        keys = self.keys.task_state()
        for task_id, token in leases.items():
            args += (task_id, token)
            keys.append(self.keys.ack_memo(token))
        return "HEARTBEAT", keys, args

    @staticmethod
    def parse_heartbeat(reply: list[Any]) -> tuple[list[str], list[tuple[str, str | None]]]:
        lost = [text(x) for x in reply[0]]
        flagged = [text(x) for x in reply[1]]
        cancelled = [(flagged[i], decode_reason(flagged[i + 1])) for i in range(0, len(flagged), 2)]
        return lost, cancelled

    def finish(
        self, delivery: Delivery, mapping: dict[str, str], ttl_ms: int, spent: list[str]
    ) -> Call:
        env = delivery.envelope
        keys = [
            *self.keys.task_state(),
            self.keys.ack_memo(delivery.token),
            self.keys.finished,
            *self.records.indexes(),
            self.records.record(env.id),
            self.records.done(env.id),
            self.records.index_name(mapping.get("task_name", env.task)),
            self.keys.finished_per_minute,
            *spent,
        ]
        args = [
            env.id,
            delivery.worker_id,
            delivery.token,
            ttl_ms,
            mapping.get("status", ""),
            len(spent),
            len(mapping),
            *flat(mapping),
        ]
        return "FINISH", keys, args

    def finish_many(
        self, items: list[tuple[Delivery, dict[str, str]]], ttl_ms: int, spent: list[str]
    ) -> Call:
        """FINISH for a batch (FINISH_MANY): the keys every item shares are sent once."""
        keys = [
            *self.keys.task_state(),
            self.keys.finished,
            self.keys.finished_per_minute,
            *self.records.indexes(),
        ]
        args: list[Any] = [ttl_ms, len(spent), len(items)]
        for delivery, mapping in items:
            env = delivery.envelope
            keys += (
                self.keys.ack_memo(delivery.token),
                self.records.record(env.id),
                self.records.done(env.id),
                self.records.index_name(mapping.get("task_name", env.task)),
            )
            args += (
                env.id,
                delivery.worker_id,
                delivery.token,
                mapping.get("status", ""),
                len(mapping),
                *flat(mapping),
            )
        keys += spent
        return "FINISH_MANY", keys, args

    def update_many(self, items: list[tuple[str, dict[str, str]]], ttl_ms: int) -> Call:
        """UPDATE for a batch of records (UPDATE_MANY)."""
        keys = self.records.indexes()
        args: list[Any] = [ttl_ms, len(items)]
        for task_id, fields in items:
            keys += (self.records.record(task_id), self.records.done(task_id))
            args += (task_id, len(fields), *flat(fields))
        return "UPDATE_MANY", keys, args

    def requeue(self, delivery: Delivery, eta: float | None, ttl_ms: int) -> Call:
        env = delivery.envelope
        q = env.queue
        keys = [
            *self.keys.task_state(),
            self.keys.seq,
            self.keys.ready(q),
            self.keys.delayed(q),
            self.keys.wake(q),
            *self.records.indexes(),
            self.records.record(env.id),
            self.records.done(env.id),
            self.records.index_name(env.task) if env.task else self.records.index_all,
        ]
        args = [env.id, delivery.worker_id, delivery.token, "" if eta is None else ms(eta)]
        return "REQUEUE", keys, [*args, ttl_ms, "1" if env.task else "0"]

    def reap_scan(self, limit: int) -> Call:
        return "REAP_SCAN", [self.keys.lease, self.keys.meta], [limit]

    def reap(
        self, scanned: list[Any], max_recoveries: int, ttl_ms: int, dead_cap: int
    ) -> tuple[Call, dict[str, str]]:
        """From a REAP_SCAN reply; also returns {id: task name} for the dead entries."""
        items = []
        for i in range(0, len(scanned), 2):
            parsed = parse_meta(scanned[i + 1])
            # No meta: the task's state is incomplete; it goes back to the default queue.
            _, queue, task = parsed if parsed is not None else (0, "default", "")
            items.append((text(scanned[i]), queue, task, parsed is not None))
        queues = list(dict.fromkeys(q for _, q, _, _ in items))
        index = {q: i for i, q in enumerate(queues)}
        keys = [
            *self.keys.task_state(),
            self.keys.seq,
            self.keys.dead,
            self.keys.dead_info,
            *self.records.indexes(),
        ]
        for q in queues:
            keys += (self.keys.ready(q), self.keys.wake(q))
        args: list[Any] = [max_recoveries, ttl_ms, dead_cap, len(queues), len(items)]
        for task_id, queue, task, known in items:
            keys += (
                self.records.record(task_id),
                self.records.done(task_id),
                self.records.index_name(task) if known else self.records.index_all,
            )
            args += (task_id, index[queue], "1" if known else "0", task)
        return ("REAP", keys, args), {task_id: task for task_id, _, task, _ in items}

    @staticmethod
    def parse_reap(
        reply: list[Any], names: dict[str, str], now: float
    ) -> tuple[list[tuple[str, int]], list[DeadEntry], list[str]]:
        rec = [text(x) for x in reply[0]]
        recovered = [(rec[i], int(rec[i + 1])) for i in range(0, len(rec), 2)]
        dead_raw = list(reply[1])
        dead = []
        for i in range(0, len(dead_raw), 2):
            task_id = text(dead_raw[i])
            dead.append(
                DeadEntry(task_id, "poison", text(dead_raw[i + 1]), now, names.get(task_id) or None)
            )
        return recovered, dead, [text(x) for x in reply[2]]

    # -- dead letters and cancel ------------------------------------------------------------
    def dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        sample: str,
        task: str | None,
        mapping: dict[str, str] | None,
        message: str,
        ttl_ms: int,
        dead_cap: int,
    ) -> Call:
        env = delivery.envelope
        name_index = self.records.index_name(task) if task is not None else self.records.index_all
        keys = [
            *self.keys.task_state(),
            self.keys.dead,
            self.keys.dead_info,
            *self.records.indexes(),
            self.records.record(env.id),
            self.records.done(env.id),
            name_index,
        ]
        mapping = mapping or {}
        args = [
            env.id,
            delivery.worker_id,
            delivery.token,
            reason,
            sample,
            task or "",
            ttl_ms,
            dead_cap,
            "0" if task is None else "1",
            message,
            len(mapping),
            *flat(mapping),
        ]
        return "DEAD_LETTER", keys, args

    def cancel(
        self, task_id: str, reason: str | None, queue: str, task: str | None, ttl_ms: int
    ) -> Call:
        name_index = self.records.index_name(task) if task is not None else self.records.index_all
        keys = [
            *self.keys.task_state(),
            self.keys.ready(queue),
            self.keys.delayed(queue),
            *self.records.indexes(),
            self.records.record(task_id),
            self.records.done(task_id),
            name_index,
        ]
        args = [
            task_id,
            "0" if reason is None else "1",
            reason or "",
            ttl_ms,
            self.keys.cancel_channel,
            "0" if task is None else "1",
        ]
        return "CANCEL", keys, args

    # -- administration ---------------------------------------------------------------------
    def stats(self, queues: list[str]) -> Call:
        keys = [
            self.keys.lease,
            self.keys.dead,
            self.keys.finished,
            self.keys.finished_per_minute,
        ]
        for q in queues:
            keys += (self.keys.ready(q), self.keys.delayed(q))
        return "STATS", keys, []

    @staticmethod
    def parse_stats(queues: list[str], reply: list[Any]) -> dict[str, Any]:
        per_queue: dict[str, Any] = {}
        for q, (ready, delayed, prios) in zip(queues, reply[4:], strict=True):
            if int(ready) or int(delayed):
                flat_prios = list(prios)
                per_queue[q] = {
                    "ready": int(ready),
                    "delayed": int(delayed),
                    "priorities": {
                        str(int(flat_prios[i])): int(flat_prios[i + 1])
                        for i in range(0, len(flat_prios), 2)
                    },
                }
        return {
            "queues": per_queue,
            "processing": int(reply[0]),
            "dead": int(reply[1]),
            "finished_last_minute": int(reply[2]),
            "finished_per_minute": [int(n) for n in reply[3]],
        }

    def retry_dead(self, env: Envelope, payload: bytes) -> Call:
        q = check_queue(env.queue)
        keys = [
            *self.keys.task_state(),
            self.keys.seq,
            self.keys.dead,
            self.keys.dead_info,
            self.keys.ready(q),
            self.keys.wake(q),
            *self.records.indexes(),
            self.records.record(env.id),
            self.records.index_name(env.task),
        ]
        return "RETRY_DEAD", keys, [env.id, payload, meta(env), clamp_priority(env.priority)]

    def purge_dead(self, task_id: str | None) -> Call:
        return (
            "PURGE_DEAD",
            [self.keys.dead, self.keys.dead_info],
            [] if task_id is None else [task_id],
        )

    def purge_queue(
        self, queue: str, ids: list[str], names: list[str | None], ttl_ms: int, reason: str
    ) -> Call:
        keys = [
            *self.keys.task_state(),
            self.keys.ready(queue),
            self.keys.delayed(queue),
            *self.records.indexes(),
        ]
        args: list[Any] = [ttl_ms, reason]
        for task_id, name in zip(ids, names, strict=True):
            keys += (
                self.records.record(task_id),
                self.records.done(task_id),
                self.records.index_name(name) if name else self.records.index_all,
            )
            args += (task_id, "1" if name else "0")
        return "PURGE_QUEUE", keys, args

    # -- storage ----------------------------------------------------------------------------
    def put(self, task_id: str, mapping: dict[str, str], ttl_ms: int) -> Call:
        name = mapping.get("task_name")
        keys = [
            *self.records.indexes(),
            self.records.record(task_id),
            self.records.done(task_id),
            self.records.index_name(name) if name is not None else self.records.index_all,
        ]
        args = [
            task_id,
            ttl_ms,
            mapping.get("status", ""),
            "0" if name is None else "1",
            len(mapping),
            *flat(mapping),
        ]
        return "PUT", keys, args

    def update(self, task_id: str, fields: dict[str, str], ttl_ms: int) -> Call:
        keys = [*self.records.indexes(), self.records.record(task_id), self.records.done(task_id)]
        return "UPDATE", keys, [task_id, ttl_ms, len(fields), *flat(fields)]


def decode_reason(value: str) -> str | None:
    """Cancel reasons travel as '0' (none) or '1' + reason."""
    return value[1:] if value.startswith("1") else None


def parse_dead_info(task_id: str, value: Any) -> DeadEntry:
    """`{p}:dead:info` value "reason\\nat\\n<len(task)>\\n<task><sample>" (bytes-exact)."""
    data = raw(value)
    try:
        reason, at, size, rest = data.split(b"\n", 3)
        n = int(size)
        task, sample = rest[:n], rest[n:]
        return DeadEntry(
            task_id,
            text(reason),
            sample.decode("utf-8", errors="replace"),
            int(at) / 1000,
            task.decode("utf-8", errors="replace") or None,
        )
    except ValueError:
        return DeadEntry(task_id, "unknown", text(data)[:1024], 0.0, None)
