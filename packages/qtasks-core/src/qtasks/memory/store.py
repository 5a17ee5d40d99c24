"""`MemoryStore`: queues, leases, records and settings for one app name, in one process.

It is the whole data model of the in-memory components, thread-safe and non-blocking; the sync
and async components around it only add waiting. It keeps the guarantees the Redis package keeps
(priority then FIFO, eta, leases with tokens, idempotent enqueue, dead letters, record TTL), so
code tested against memory behaves the same against Redis.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import threading
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from qtasks._waiters import Waiter
from qtasks.schemas.delivery import DeadEntry, Delivery
from qtasks.schemas.envelope import Envelope

FINAL = frozenset({"success", "error", "cancel", "retry"})


def cancelled_mapping(record: dict[str, str], reason: str | None) -> dict[str, str]:
    out = dict(record)
    now = repr(time.time())
    out.update({"status": "cancel", "updated_at": now, "finished_at": now})
    if reason is not None:
        out["cancel_reason"] = reason
    return out


@dataclass(slots=True)
class Lease:
    worker: str
    token: str
    deadline: float


class MemoryStore:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self._seq = itertools.count()
        self.ready: dict[str, list[tuple[int, int, str]]] = {}
        self.delayed: list[tuple[float, int, str]] = []
        self.pending: dict[str, Envelope] = {}
        self.leases: dict[str, Lease] = {}
        self.records: dict[str, dict[str, str]] = {}
        self.expires: dict[str, float] = {}
        self.dead: dict[str, DeadEntry] = {}
        self.cancel_requests: dict[str, str | None] = {}
        self.recoveries: dict[str, int] = {}
        self.kv: dict[str, dict[str, Any]] = {}
        self.kv_expires: dict[tuple[str, str], float] = {}
        self.consumer_waiters: list[Waiter] = []
        self.record_waiters: dict[str, list[Waiter]] = {}
        self.cancel_listeners: list[Callable[[str, str | None], None]] = []
        self.finished: deque[float] = deque()

    # -- enqueue --------------------------------------------------------------------------------
    def enqueue(self, items: Iterable[tuple[Envelope, dict[str, str]]]) -> list[bool]:
        """Write records and queue entries; an id already known is skipped (idempotent)."""
        created: list[bool] = []
        now = time.time()
        with self.lock:
            for env, mapping in items:
                if env.id in self.records or env.id in self.pending:
                    created.append(False)
                    continue
                self.records[env.id] = mapping
                self.pending[env.id] = env
                if env.eta is not None and env.eta > now:
                    heapq.heappush(self.delayed, (env.eta, next(self._seq), env.id))
                else:
                    self._push_ready(env)
                created.append(True)
        self._wake_consumers()
        return created

    def _wake_consumers(self) -> None:
        """Wake every blocked claim (called after releasing the lock)."""
        with self.lock:
            waiters, self.consumer_waiters = self.consumer_waiters, []
        for waiter in waiters:
            waiter.wake()

    def _push_ready(self, env: Envelope) -> None:
        heap = self.ready.setdefault(env.queue, [])
        heapq.heappush(heap, (env.priority, next(self._seq), env.id))

    # -- claim ----------------------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        limit: int,
        queues: list[str],
        lease_timeout: float,
        waiter: Waiter | None = None,
    ) -> tuple[list[Delivery], float | None]:
        """Take up to `limit` tasks, highest priority first across `queues`. When none is ready
        and a waiter is given, it is registered; also returns the next eta, if any."""
        now = time.time()
        out: list[Delivery] = []
        with self.lock:
            self._promote_due(now)
            while len(out) < limit:
                best: tuple[int, int, str] | None = None
                best_heap: list[tuple[int, int, str]] | None = None
                for queue in queues:
                    heap = self.ready.get(queue)
                    while heap and (heap[0][2] not in self.pending or heap[0][2] in self.leases):
                        heapq.heappop(heap)  # lazily drop cancelled or claimed entries
                    if heap and (best is None or heap[0] < best):
                        best, best_heap = heap[0], heap
                if best is None or best_heap is None:
                    break
                heapq.heappop(best_heap)
                env = self.pending[best[2]]
                token = uuidlib.uuid4().hex
                self.leases[env.id] = Lease(worker, token, now + lease_timeout)
                out.append(Delivery(env, token, worker, now, self.recoveries.get(env.id, 0)))
            next_eta = self.delayed[0][0] if self.delayed else None
            if not out and waiter is not None:
                self.consumer_waiters.append(waiter)
        return out, next_eta

    def _promote_due(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            _, _, task_id = heapq.heappop(self.delayed)
            env = self.pending.get(task_id)
            if env is not None and task_id not in self.leases:
                self._push_ready(env)

    # -- leases ---------------------------------------------------------------------------------
    def heartbeat(self, worker: str, tokens: dict[str, str], lease_timeout: float) -> list[str]:
        """Renew leases still held; returns the ids whose lease this worker lost."""
        deadline = time.time() + lease_timeout
        lost: list[str] = []
        with self.lock:
            for task_id, token in tokens.items():
                lease = self.leases.get(task_id)
                if lease is None or lease.token != token:
                    lost.append(task_id)
                else:
                    lease.deadline = deadline
        return lost

    def finish(self, delivery: Delivery, mapping: dict[str, str], ttl: float | None) -> bool:
        """Final write, fenced by the lease token: a worker that lost its lease changes nothing."""
        task_id = delivery.envelope.id
        with self.lock:
            lease = self.leases.get(task_id)
            if lease is None or lease.token != delivery.token:
                return False
            del self.leases[task_id]
            self.pending.pop(task_id, None)
            self.cancel_requests.pop(task_id, None)
            self.recoveries.pop(task_id, None)
            self._write_record(task_id, mapping, ttl)
            self.finished.append(time.time())
        return True

    def requeue(
        self, delivery: Delivery, eta: float | None = None, ttl: float | None = None
    ) -> bool:
        """Hand back an unstarted or interrupted task (no recovery counted)."""
        task_id = delivery.envelope.id
        with self.lock:
            lease = self.leases.get(task_id)
            if lease is None or lease.token != delivery.token:
                return False
            del self.leases[task_id]
            if self._cancel_held(task_id, ttl):
                return True
            env = self.pending[task_id]
            record = self.records.get(task_id)
            if record is not None:
                record["status"] = "new"  # back in the queue, not running
            if eta is not None:
                env.eta = eta
                heapq.heappush(self.delayed, (eta, next(self._seq), task_id))
            else:
                self._push_ready(env)
        self._wake_consumers()
        return True

    def reap(
        self, max_recoveries: int, ttl: float | None = None
    ) -> tuple[list[tuple[str, int]], list[DeadEntry]]:
        """Return lapsed leases to the queue; past `max_recoveries`, dead-letter as poison."""
        now = time.time()
        recovered: list[tuple[str, int]] = []
        dead: list[DeadEntry] = []
        with self.lock:
            for task_id, lease in list(self.leases.items()):
                if lease.deadline > now:
                    continue
                del self.leases[task_id]
                if self._cancel_held(task_id, ttl):
                    continue
                count = self.recoveries.get(task_id, 0) + 1
                self.recoveries[task_id] = count
                env = self.pending[task_id]
                if count > max_recoveries:
                    entry = self._dead_letter(task_id, "poison", env.task, env.task, ttl)
                    dead.append(entry)
                    continue
                record = self.records.get(task_id)
                if record is not None:
                    record["recoveries"] = str(count)
                    record["status"] = "new"
                self._push_ready(env)
                recovered.append((task_id, count))
        self._wake_consumers()
        return recovered, dead

    def _cancel_held(self, task_id: str, ttl: float | None) -> bool:
        """(Caller holds the lock, the lease is gone) whether the task was asked to cancel
        while held; if so it ends as cancelled instead of going back to its queue (a stop hands
        back what its worker holds, the reaper what a dead worker held), as on Redis."""
        if task_id not in self.cancel_requests:
            return False
        reason = self.cancel_requests.pop(task_id)
        self.pending.pop(task_id, None)
        self.recoveries.pop(task_id, None)
        record = self.records.get(task_id)
        if record is not None:
            self._write_record(task_id, cancelled_mapping(record, reason), ttl)
        return True

    def _dead_letter(
        self, task_id: str, reason: str, sample: str, name: str | None, ttl: float | None
    ) -> DeadEntry:
        # Caller holds the lock. The record ends as `error`, kept for `ttl` like any final
        # record; the dead letter itself stays until retried or purged.
        entry = DeadEntry(task_id, reason, sample, time.time(), name)
        self.dead[task_id] = entry
        self.pending.pop(task_id, None)
        self.leases.pop(task_id, None)
        record = self.records.get(task_id)
        if record is not None:
            record.setdefault("traceback", f"dead-lettered: {reason}")
            record.update(
                {"status": "error", "dead_reason": reason, "updated_at": repr(time.time())}
            )
            if ttl is not None:
                self.expires[task_id] = time.time() + ttl
            self._notify_record(task_id)
        return entry

    def dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        sample: str,
        mapping: dict[str, str] | None,
        ttl: float | None = None,
    ) -> bool:
        task_id = delivery.envelope.id
        with self.lock:
            lease = self.leases.get(task_id)
            if lease is None or lease.token != delivery.token:
                return False
            if mapping is not None:
                self.records[task_id] = mapping
            self._dead_letter(task_id, reason, sample, delivery.envelope.task, ttl)
        return True

    # -- records --------------------------------------------------------------------------------
    def _write_record(self, task_id: str, mapping: dict[str, str], ttl: float | None) -> None:
        # Caller holds the lock.
        self.records[task_id] = mapping
        if ttl is not None and mapping.get("status") in FINAL:
            self.expires[task_id] = time.time() + ttl
        self._notify_record(task_id)

    def _notify_record(self, task_id: str) -> None:
        for waiter in self.record_waiters.pop(task_id, ()):
            waiter.wake()

    def put_record(self, task_id: str, mapping: dict[str, str], ttl: float | None) -> None:
        with self.lock:
            self._write_record(task_id, mapping, ttl)

    def update_record(self, task_id: str, fields: dict[str, str]) -> bool:
        with self.lock:
            record = self.records.get(task_id)
            if record is None:
                return False
            record.update(fields)
            self._notify_record(task_id)
            return True

    def get_record(self, task_id: str, waiter: Waiter | None = None) -> dict[str, str] | None:
        """The record (a copy); registers `waiter` to be woken at its next write."""
        with self.lock:
            expiry = self.expires.get(task_id)
            if expiry is not None and expiry <= time.time():
                self.records.pop(task_id, None)
                self.expires.pop(task_id, None)
            record = self.records.get(task_id)
            if waiter is not None:
                self.record_waiters.setdefault(task_id, []).append(waiter)
            return None if record is None else dict(record)

    def all_records(self) -> list[dict[str, str]]:
        now = time.time()
        with self.lock:
            return [dict(r) for k, r in self.records.items() if self.expires.get(k, now + 1) > now]

    def delete_finished(self) -> int:
        with self.lock:
            gone = [k for k, r in self.records.items() if r.get("status") in FINAL]
            for key in gone:
                del self.records[key]
                self.expires.pop(key, None)
            return len(gone)

    # -- cancel ---------------------------------------------------------------------------------
    def cancel(
        self,
        task_id: str,
        reason: str | None,
        mapping_for_cancel: Callable[[dict[str, str]], dict[str, str]],
        ttl: float | None = None,
    ) -> str:
        """`cancelled` (was queued: never starts), `signalled` (running: workers told), or
        `final`/`unknown`."""
        with self.lock:
            if task_id in self.leases:
                self.cancel_requests[task_id] = reason
                listeners = list(self.cancel_listeners)
                outcome = "signalled"
            elif task_id in self.pending:
                del self.pending[task_id]  # its heap entry is dropped lazily at claim
                record = self.records.get(task_id, {})
                self._write_record(task_id, mapping_for_cancel(record), ttl)
                return "cancelled"
            else:
                return "final" if task_id in self.records else "unknown"
        for listener in listeners:
            listener(task_id, reason)
        return outcome

    # -- global config --------------------------------------------------------------------------
    def kv_set(
        self, name: str, key: str, value: Any, ttl: float | None = None, only_new: bool = False
    ) -> bool:
        now = time.time()
        with self.lock:
            bucket = self.kv.setdefault(name, {})
            expiry = self.kv_expires.get((name, key))
            if expiry is not None and expiry <= now:
                bucket.pop(key, None)
                del self.kv_expires[(name, key)]
            if only_new and key in bucket:
                return False
            bucket[key] = value
            if ttl is not None:
                self.kv_expires[(name, key)] = now + ttl
            else:
                self.kv_expires.pop((name, key), None)
            return True

    def kv_get_all(self, name: str) -> dict[str, Any]:
        """Copies, as Redis' are: a caller that changes what it read changes nothing here."""
        now = time.time()
        with self.lock:
            bucket = self.kv.get(name, {})
            return {
                k: copy.deepcopy(v)
                for k, v in bucket.items()
                if self.kv_expires.get((name, k), now + 1) > now
            }

    # -- admin ----------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        now = time.time()
        queues: dict[str, dict[str, Any]] = {}
        with self.lock:
            for task_id, env in self.pending.items():
                if task_id in self.leases:
                    continue
                entry = queues.setdefault(env.queue, {"ready": 0, "delayed": 0, "priorities": {}})
                if env.eta is not None and env.eta > now:
                    entry["delayed"] += 1
                else:
                    entry["ready"] += 1
                    prio = entry["priorities"]
                    prio[str(env.priority)] = prio.get(str(env.priority), 0) + 1
            while self.finished and self.finished[0] < now - 60:
                self.finished.popleft()
            return {
                "queues": queues,
                "processing": len(self.leases),
                "dead": len(self.dead),
                "finished_last_minute": len(self.finished),
            }

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.all_records():
            status = record.get("status", "?")
            counts[status] = counts.get(status, 0) + 1
        return counts

    def retry_dead(self, task_id: str) -> bool:
        with self.lock:
            record = self.records.get(task_id)
            if task_id not in self.dead or record is None:
                return False  # nothing to run it from: the dead letter stays, as on Redis
            del self.dead[task_id]
            env = envelope_from_record(task_id, record)
            self.pending[task_id] = env
            self.recoveries.pop(task_id, None)
            record.update({"status": "new", "recoveries": "0", "updated_at": repr(time.time())})
            record.pop("dead_reason", None)
            record.pop("traceback", None)
            self.expires.pop(task_id, None)
            self._push_ready(env)
        self._wake_consumers()
        return True

    def purge_dead(self, task_id: str | None) -> int:
        with self.lock:
            if task_id is None:
                count = len(self.dead)
                self.dead.clear()
                return count
            return 1 if self.dead.pop(task_id, None) is not None else 0

    def purge_queue(
        self,
        queue: str,
        mapping_for_cancel: Callable[[dict[str, str]], dict[str, str]],
        ttl: float | None = None,
    ) -> int:
        with self.lock:
            doomed = [
                k for k, env in self.pending.items() if env.queue == queue and k not in self.leases
            ]
            for task_id in doomed:
                del self.pending[task_id]
                record = self.records.get(task_id, {})
                self._write_record(task_id, mapping_for_cancel(record), ttl)
            return len(doomed)

    def flush(self) -> None:
        with self.lock:
            self.ready.clear()
            self.delayed.clear()
            self.pending.clear()
            self.leases.clear()
            self.records.clear()
            self.expires.clear()
            self.dead.clear()
            self.cancel_requests.clear()
            self.recoveries.clear()
            self.kv.clear()
            self.kv_expires.clear()


def envelope_from_record(task_id: str, record: dict[str, str]) -> Envelope:
    """Rebuild a task's envelope from its record (to re-run a dead-lettered task)."""
    return Envelope(
        id=task_id,
        task=record["task_name"],
        args=json.loads(record.get("args", "[]")),
        kwargs=json.loads(record.get("kwargs", "{}")),
        priority=int(record.get("priority", 0)),
        queue=record.get("queue", "default"),
        created_at=float(record.get("created_at", 0)),
        attempt=int(record.get("attempt", 0)),
        retry=int(record["retry"]) if "retry" in record else None,
        parent=record.get("retry_parent_uuid"),
        extra=json.loads(record["extra"]) if "extra" in record else {},
    )


_STORES: dict[str, MemoryStore] = {}
_STORES_LOCK = threading.Lock()


def get_store(name: str) -> MemoryStore:
    """The process-wide store for an app name: apps and components with one name share it."""
    with _STORES_LOCK:
        store = _STORES.get(name)
        if store is None:
            store = _STORES[name] = MemoryStore(name)
        return store
