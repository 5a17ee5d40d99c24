"""`SyncRedisBroker` and `AsyncRedisBroker`: leases, priorities, eta and dead letters in Redis.

Each primitive is one flow shared by both flavours (see `connection.py`); the flavour classes at
the bottom only pick the client kind and the few things that cannot be a flow.
"""

from __future__ import annotations

import math
import time
import uuid as uuidlib
import warnings
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any

from qtasks._drive import Flow
from qtasks.brokers.base import AsyncBroker, BaseBroker, Staged, SyncBroker
from qtasks.exc import ConfigError, DecodeError
from qtasks.redis._admin import BrokerAdmin
from qtasks.redis._cancel import CancelListener
from qtasks.redis._guards import Epoch, guard_eviction_flow
from qtasks.redis._stream import streamed_scripts_flow
from qtasks.redis.connection import (
    ASYNC,
    TRANSIENT,
    Health,
    RedisConnection,
    guarded,
    persist,
    pipeline_step,
    text,
)
from qtasks.redis.keys import BrokerKeys
from qtasks.redis.protocol import Call, Protocol, ms, parse_meta
from qtasks.schemas.delivery import DeadEntry, Delivery
from qtasks.schemas.envelope import Envelope, decode, encode, sample
from qtasks.schemas.task import Task, new_record, to_mapping
from redis.exceptions import NoScriptError

REAP_BATCH = 500
STREAM_CHUNK = 50
"""Tasks per ENQUEUE call of a bulk enqueue; larger ones are streamed in calls of this size."""
SPENT_BATCH = 64
MIN_BLOCK = 0.01
REDIS_TICK = 0.1
"""How late Redis may end a blocking command's timeout: it checks them on its timer, ten times a
second by default (`hz`), so a BLPOP of 0.25 s returns after 0.25-0.35 s."""
WOKEN_CLAIM_FALLBACK: tuple[type[BaseException], ...] = (*TRANSIENT, NoScriptError)
"""Failures of a BLPOP + CLAIM pair after which the claim is sent alone."""


def _block_until(limit: float, due_in: float) -> float | None:
    """How long to block on the wake-up lists when idle for `limit` seconds at most and the
    next delayed task is due in `due_in`: one Redis timer tick short of the due time (a block
    ends up to a tick late), and not at all in the last tick, which the caller sleeps so the
    task starts on time. None: do not block."""
    if due_in < limit:
        limit = due_in - REDIS_TICK
    return limit if limit >= MIN_BLOCK else None


class _RedisBroker(BrokerAdmin, BaseBroker):
    """The Redis broker (see the package README for the guarantees and the key schema)."""

    def __init__(
        self,
        name: str = "QueueTasks",
        url: str | None = None,
        storage: Any = None,
        *,
        redis_connect: Any = None,
        queue_name: str | None = None,
        prefix: str | None = None,
        dead_letter_limit: int = 10_000,
        connection: RedisConnection | None = None,
        **kwargs: Any,
    ) -> None:
        if queue_name not in (None, "task_queue"):
            # 1.7 had one list per app; queues are now chosen per task (`@app.task(queue=)`)
            # and per worker (`config.queues`).
            warnings.warn(
                "queue_name is accepted for qtasks 1.7 compatibility and ignored; "
                "use @app.task(queue=...) and config.queues",
                stacklevel=2,
            )
        url = self._connect(url, redis_connect, connection)
        self.keys = BrokerKeys(prefix or name)
        self.dead_letter_limit = dead_letter_limit
        self.broker_id = uuidlib.uuid4().hex[:12]
        self._interrupted = False
        self._cancel_seen: set[str] = set()
        self._spent: deque[str] = deque()
        self._finished_tokens: deque[str] = deque(maxlen=4096)
        self._drained: dict[tuple[str, ...], float] = {}
        """Queues whose last claim emptied them -> when their next delayed task is due."""
        self._listener = CancelListener(self)
        super().__init__(name=name, url=url, storage=storage, **kwargs)
        self._health = Health(self.log)
        self._epoch = Epoch(self.keys.epoch, self.log)
        self._check_storage()

    def _default_storage(self) -> Any:
        from qtasks.redis.storage import AsyncRedisStorage, SyncRedisStorage

        cls = AsyncRedisStorage if self.flavour.is_async else SyncRedisStorage
        return cls(
            name=self.name, url=self.url, prefix=self.keys.prefix, connection=self.connection
        )

    def _check_storage(self) -> None:
        # Records are written by the broker's scripts, atomically with the queue entries, so
        # the storage must live in the same Redis database.
        from qtasks.redis.storage import RedisStorageBase

        storage = self.storage
        if not isinstance(storage, RedisStorageBase):
            raise ConfigError(
                f"{type(self).__name__} writes task records atomically with its "
                f"queue entries and needs a Redis storage, not "
                f"{type(storage).__name__}"
            )
        if storage.flavour.is_async != self.flavour.is_async:
            raise ConfigError(f"{type(storage).__name__} does not fit {type(self).__name__}")
        if storage.connection is not self.connection and (
            storage.connection.target() != self.connection.target()
        ):
            raise ConfigError(
                "the broker and its storage must use the same Redis server and "
                "database (the broker writes records in its scripts)"
            )

    @property
    def protocol(self) -> Protocol:
        # Built once per storage (it only holds key builders): this is on every call's path.
        cached = self.__dict__.get("_protocol")
        if cached is None or cached.records is not self.storage.record_keys:
            cached = self.__dict__["_protocol"] = Protocol(self.keys, self.storage.record_keys)
        return cached

    def _lease_ms(self) -> int:
        return ms(self.config.lease_timeout)

    def _stopping(self) -> bool:
        return self._interrupted

    def _take_spent(self) -> list[str]:
        """Memo keys whose reply arrived: the next claim or finish deletes them, so memos
        of a busy worker do not pile up until their TTL."""
        out: list[str] = []
        while self._spent and len(out) < SPENT_BATCH:
            try:
                out.append(self._spent.popleft())
            except IndexError:  # taken by another thread meanwhile
                break
        return out

    # -- enqueue ----------------------------------------------------------------------------
    def _enqueue(self, items: list[tuple[Envelope, bytes, Task]]) -> Any:
        return self._run(self._enqueue_flow(items, []))

    def _enqueue_steps(self, items: list[Staged]) -> Flow[list[Task]]:
        records: list[Task] = []
        yield from self._enqueue_flow(items, records)
        return records

    def _enqueue_flow(self, items: Sequence[Staged], records: list[Task]) -> Flow[list[bool]]:
        """Write `items`, appending their records to `records` (a missing one is made as its
        call is built); -> whether each was created (an existing id is skipped)."""
        if not items:
            return []

        max_bytes = self.config.max_payload_bytes

        def call(chunk: Sequence[Staged]) -> Call:
            mapped = []
            for env, payload, staged in chunk:
                model = new_record(env) if staged is None else staged
                records.append(model)
                data = encode(env, max_bytes) if payload is None else payload
                mapped.append((env, data, to_mapping(model)))
            return self.protocol.enqueue(mapped)

        if len(items) <= STREAM_CHUNK:
            reply = yield from guarded(self._call_flow(call(items)), "enqueue")
            return [bool(int(x)) for x in reply]
        # A bulk enqueue, already validated whole: its calls (and records) are made while
        # Redis runs the ones before (see `_stream.py`).
        script = self.connection.script(self.config.socket_timeout, "ENQUEUE")
        chunks = (items[i : i + STREAM_CHUNK] for i in range(0, len(items), STREAM_CHUNK))
        calls = (call(chunk)[1:] for chunk in chunks)
        replies = yield from guarded(streamed_scripts_flow(self.client, script, calls), "enqueue")
        return [bool(int(x)) for reply in replies for x in reply]

    # -- claim ------------------------------------------------------------------------------
    def claim(self, worker_id: str, limit: int, timeout: float, queues: list[str]) -> Any:
        return self._run(self._claim_flow(worker_id, limit, timeout, queues))

    def _claim_flow(
        self, worker_id: str, limit: int, timeout: float, queues: list[str]
    ) -> Flow[list[Delivery]]:
        deadline = time.monotonic() + timeout
        queues = list(dict.fromkeys(queues)) or ["default"]
        wake_keys = [self.keys.wake(q) for q in queues]
        wake_keys.append(self.keys.interrupt(self.broker_id))
        max_bytes = self.config.max_payload_bytes
        key = tuple(queues)
        drained = self._drained.get(key)
        block: float | None = None
        if drained is not None and not self._interrupted:
            # The last claim on these queues left them empty: block on the wake-up lists first
            # instead of sending a claim that finds nothing (a task enqueued since then left a
            # token, so this returns at once), never past the next eta. Every claim loop of
            # the worker does so until a claim fills its limit: an enqueue wakes one of them,
            # and a claim that leaves work behind passes the wake-up on.
            due_in = max(0.0, drained - time.monotonic())
            block = _block_until(min(timeout, self._block_limit()), due_in)
        while True:
            # One claim id per attempt: a re-sent claim (lost reply) gets the same deliveries.
            claim_id = uuidlib.uuid4().hex[:16]
            call = self.protocol.claim(
                worker_id,
                max(1, limit),
                self._lease_ms(),
                claim_id,
                max_bytes,
                queues,
                self._take_spent(),
            )
            reply = None
            if block is not None:
                reply = yield from self._woken_claim_flow(wake_keys, block, call)
                block = None
            if reply is None:
                reply = yield from persist(
                    self._call(call),
                    float("inf"),
                    self.flavour.sleep,
                    self._health,
                    "claim",
                    self._stopping,
                )
            now_ms, next_eta, entries = self.protocol.parse_claim(reply)
            if entries:
                self._spent.append(self.keys.claim_memo(claim_id))
            deliveries: list[Delivery] = []
            for task_id, token, q, kind, data, lapses in entries:
                delivery = Delivery(
                    Envelope(id=task_id, task="", queue=queues[q]),
                    token,
                    worker_id,
                    time.time(),
                    lapses,
                )
                try:
                    delivery.envelope = self._decode_entry(
                        task_id, queues[q], kind, data, max_bytes
                    )
                except DecodeError as exc:
                    yield from self._bury_flow(delivery, exc, data)
                    continue
                deliveries.append(delivery)
            if deliveries or entries:
                if deliveries:
                    if len(entries) < limit:
                        eta_in = (next_eta - now_ms) / 1000 if next_eta >= 0 else float("inf")
                        self._drained[key] = time.monotonic() + eta_in
                    else:
                        self._drained.pop(key, None)
                    return deliveries
                continue  # only malformed entries: look again at once
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._interrupted:
                return []
            due_in = max(0.0, (next_eta - now_ms) / 1000) if next_eta >= 0 else math.inf
            # Idle: block on the wake-up lists (an enqueue, a requeue or a peer's claim pushes
            # a token), never longer than the next eta or the socket allows; the next claim is
            # sent behind the block.
            block = _block_until(min(remaining, self._block_limit()), due_in)
            if block is None and 0 < due_in < REDIS_TICK + MIN_BLOCK:
                # The last stretch before a task is due: slept here (see `_block_until`).
                yield partial(self.flavour.sleep, due_in)

    def _woken_claim_flow(self, wake_keys: list[str], wait: float, call: Call) -> Flow[Any]:
        """BLPOP on the wake-up lists with the CLAIM pipelined behind it: Redis runs a blocked
        client's next command as soon as the block returns, so a woken worker has its tasks
        one round trip after the enqueue instead of two. -> the claim's reply, or None when
        the pair failed (the caller then sends the claim alone, under the same claim id, so a
        claim that ran returns the same tasks)."""
        name, keys, args = call
        script = self.connection.script(self.config.socket_timeout, name)
        try:
            _, reply = yield pipeline_step(
                self.client,
                [
                    ("blpop", (wake_keys, round(wait, 3))),
                    ("execute_command", ("EVALSHA", script.sha, len(keys), *keys, *args)),
                ],
            )
        except WOKEN_CLAIM_FALLBACK:
            return None
        self._health.ok()
        return reply

    def _block_limit(self) -> float:
        limit = self.config.block_timeout
        socket_timeout = self.connection.socket_timeout()
        if socket_timeout is not None:
            limit = min(limit, socket_timeout * 0.8)
        return max(MIN_BLOCK, limit)

    @staticmethod
    def _decode_entry(task_id: str, queue: str, kind: str, data: bytes, max_bytes: int) -> Envelope:
        if kind == "missing":
            raise DecodeError("queue entry without a payload", "missing_payload")
        if kind == "oversized":
            raise DecodeError(f"payload over the {max_bytes}-byte cap", "oversized")
        env = decode(data, max_bytes)
        if env.id != task_id or env.queue != queue:
            raise DecodeError("envelope id or queue differs from its queue entry", "invalid_schema")
        return env

    def _bury_flow(self, delivery: Delivery, exc: DecodeError, data: bytes) -> Flow[None]:
        """A malformed entry never reaches a worker: dead-letter it with a short sample."""
        task_id = delivery.envelope.id
        snippet = sample(data)
        self.log.error(
            "dead-lettering queue entry %r: %s (%s, %d bytes)",
            task_id[:100],
            exc.reason,
            exc,
            len(data),
        )
        call = self.protocol.dead_letter(
            delivery,
            exc.reason,
            snippet,
            None,
            None,
            f"dead-lettered: {exc.reason}: {exc}",
            self._ttl_ms(),
            self.dead_letter_limit,
        )
        done = yield from persist(
            self._call(call),
            self.config.lease_timeout,
            self.flavour.sleep,
            self._health,
            "dead letter",
        )
        if done:
            yield from self.plugins.broker(
                "broker_task_dead", broker=self, uuid=task_id, reason=exc.reason, sample=snippet
            )

    # -- leases -----------------------------------------------------------------------------
    def heartbeat(self, worker_id: str, leases: dict[str, str]) -> Any:
        return self._run(self._heartbeat_flow(worker_id, leases))

    def _heartbeat_flow(self, worker_id: str, leases: dict[str, str]) -> Flow[list[str]]:
        if not leases:
            return []
        try:
            reply = yield self._call(self.protocol.heartbeat(worker_id, leases, self._lease_ms()))
        except TRANSIENT as exc:
            # Leases stay ours until the reaper sees them lapse; the next beat renews them.
            self._health.failed(exc, "heartbeat")
            return []
        self._health.ok()
        lost, cancelled = self.protocol.parse_heartbeat(reply)
        # A task finished between the worker's snapshot of its leases and this beat is not
        # lost: its lease ended with our own final write.
        lost = [task_id for task_id in lost if leases[task_id] not in self._finished_tokens]
        for task_id, reason in cancelled:
            # The pub/sub message may have been missed (reconnect): the heartbeat catches up.
            if task_id not in self._cancel_seen:
                self._cancel_seen.add(task_id)
                self.notify_cancel(task_id, reason)
        return lost

    def notify_cancel(self, uuid: str, reason: str | None) -> None:
        self._cancel_seen.add(uuid)
        super().notify_cancel(uuid, reason)

    def _finish(self, delivery: Delivery, mapping: dict[str, str]) -> Any:
        return self._run(self._finish_flow_(delivery, mapping))

    def _finish_steps(self, delivery: Delivery, mapping: dict[str, str]) -> Flow[bool]:
        return self._finish_flow_(delivery, mapping)

    def _finish_flow_(self, delivery: Delivery, mapping: dict[str, str]) -> Flow[bool]:
        # The result of a task that ran is worth waiting for through a short outage; a re-sent
        # finish whose first reply was lost is recognised by the script (reply 2). Final writes
        # of tasks that end together share one round trip (`_batch.py`).
        reply = yield from persist(
            self._batched(
                self._pack_finishes, (delivery, mapping), ("final", delivery.envelope.id)
            ),
            self.config.lease_timeout,
            self.flavour.sleep,
            self._health,
            "finish",
        )
        self._cancel_seen.discard(delivery.envelope.id)
        self._spent.append(self.keys.ack_memo(delivery.token))
        self._finished_tokens.append(delivery.token)
        return int(reply) in (1, 2)

    def _pack_finishes(self, items: list[tuple[Delivery, dict[str, str]]]) -> Any:
        return self.protocol.finish_many(items, self._ttl_ms(), self._take_spent())

    def _mark_started_flow(self, delivery: Delivery) -> Flow[None]:
        # Worth a short wait (it decides whether a crash counts toward poison), not a long one:
        # if it fails, the worker logs it and runs the task; the lapse cap still bounds it.
        yield from persist(
            self._call(self.protocol.started(delivery)),
            min(5.0, self.config.lease_timeout),
            self.flavour.sleep,
            self._health,
            "start mark",
        )

    def _requeue(self, delivery: Delivery, eta: float | None) -> Any:
        return self._run(self._requeue_flow(delivery, eta))

    def _requeue_flow(self, delivery: Delivery, eta: float | None) -> Flow[bool]:
        try:
            reply = yield from persist(
                self._call(self.protocol.requeue(delivery, eta, self._ttl_ms())),
                min(5.0, self.config.lease_timeout),
                self.flavour.sleep,
                self._health,
                "requeue",
            )
        except TRANSIENT:
            # Used while a worker stops: its lease lapses and the reaper returns the task.
            self.log.warning(
                "could not hand back task %s; its lease will lapse", delivery.envelope.id
            )
            return False
        return bool(int(reply))

    def _reap(self) -> Any:
        return self._run(self._reap_flow_())

    def _reap_flow_(self) -> Flow[tuple[list[tuple[str, int]], list[DeadEntry]]]:
        try:
            yield from self._epoch.flow(self.client)
            yield self._script("PRUNE", self.storage.record_keys.indexes(), [])
            scanned = yield self._call(self.protocol.reap_scan(REAP_BATCH))
            if not scanned:
                self._health.ok()
                return [], []
            call, names = self.protocol.reap(
                list(scanned), self.config.max_recoveries, self._ttl_ms(), self.dead_letter_limit
            )
            reply = yield self._call(call)
        except TRANSIENT as exc:
            self._health.failed(exc, "reap")
            return [], []
        self._health.ok()
        recovered, dead, cancelled = self.protocol.parse_reap(reply, names, time.time())
        for task_id in cancelled:
            self.log.warning(
                "task %s was cancelled and its worker was lost; recorded as cancelled", task_id
            )
        return recovered, dead

    # -- cancel and dead letters ------------------------------------------------------------
    def _cancel(self, uuid: str, reason: str | None) -> Any:
        return self._run(guarded(self._cancel_flow_(uuid, reason), "cancel"))

    def _cancel_flow_(self, uuid: str, reason: str | None) -> Flow[str]:
        found_meta, found_name = yield pipeline_step(
            self.client,
            [
                ("hget", (self.keys.meta, uuid)),
                ("hget", (self.storage.record_keys.record(uuid), "task_name")),
            ],
        )
        parsed = parse_meta(found_meta) if found_meta is not None else None
        queue = parsed[1] if parsed is not None else "default"
        name = text(found_name) if found_name is not None else None
        reply = yield self._call(self.protocol.cancel(uuid, reason, queue, name, self._ttl_ms()))
        return text(reply)

    def _dead_letter(
        self, delivery: Delivery, reason: str, sample: str, mapping: dict[str, str] | None
    ) -> Any:
        return self._run(self._dead_letter_flow_(delivery, reason, sample, mapping))

    def _dead_letter_flow_(
        self, delivery: Delivery, reason: str, sample: str, mapping: dict[str, str] | None
    ) -> Flow[bool]:
        task = (mapping or {}).get("task_name", delivery.envelope.task) or None
        call = self.protocol.dead_letter(
            delivery,
            reason,
            sample,
            task,
            mapping,
            f"dead-lettered: {reason}",
            self._ttl_ms(),
            self.dead_letter_limit,
        )
        reply = yield from persist(
            self._call(call),
            self.config.lease_timeout,
            self.flavour.sleep,
            self._health,
            "dead letter",
        )
        return bool(int(reply))

    # -- admin ------------------------------------------------------------------------------
    def _flush(self) -> Any:
        return self._run(
            guarded(self._scan_delete_flow(self.keys.prefix, self.keys.families), "flush")
        )

    # -- lifecycle --------------------------------------------------------------------------
    def _start(self) -> Any:
        return self._run(guarded(self._start_flow_(), "broker start"))

    def _start_flow_(self) -> Flow[None]:
        self._interrupted = False
        yield from self._acquire_flow()
        # Self-check: fails fast (typed) on a wrong URL, password or ACL prefix.
        yield self._call(self.protocol.reap_scan(0))
        yield from guard_eviction_flow(self.client, self.config.allow_eviction, self.log)
        yield from self._epoch.flow(self.client)
        self._listener.start()

    def _stop(self) -> Any:
        return self._run(self._stop_flow_())

    def _stop_flow_(self) -> Flow[None]:
        yield self._listener.stop
        yield from self._release_flow()


class SyncRedisBroker(_RedisBroker, SyncBroker):
    """Redis broker for the sync app (`redis.Redis`)."""

    def interrupt(self) -> None:
        """Wake this broker's blocked claims at once (a worker is stopping)."""
        self._interrupted = True
        key = self.keys.interrupt(self.broker_id)
        try:
            run = pipeline_step(
                self.client, [("rpush", (key, *["1"] * 16)), ("pexpire", (key, 10_000))]
            )
            run()
        except Exception as exc:  # noqa: BLE001 - best effort: claims end within block_timeout
            self.log.debug("interrupt failed: %s", exc)


class AsyncRedisBroker(_RedisBroker, AsyncBroker):
    """Redis broker for the asyncio app (`redis.asyncio.Redis`)."""

    flavour = ASYNC

    def interrupt(self) -> None:
        # Called without await; the async worker cancels its blocked claim tasks itself.
        self._interrupted = True
