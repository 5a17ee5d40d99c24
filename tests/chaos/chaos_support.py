"""Helpers of the chaos suite: waits, the ledger, the invariant checker and the producer side.

Imported by name (conftest.py puts this directory on sys.path); the module names are unique in
the repository, so they cannot clash with another package's test helpers.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
PREFIX = "tq"
FINAL = frozenset({"success", "error", "cancel", "retry"})

#: Short timings every worker of the suite runs with (reliability.md section 7), as QTASKS_* env.
FAST = {
    "lease_timeout": 1.0,
    "heartbeat_interval": 0.25,
    "reaper_interval": 0.25,
    "block_timeout": 0.5,
    "socket_timeout": 1.0,
}


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Poll an observable event (a ledger line, a record) until it holds; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def producer(url: str, name: str = PREFIX, **config: Any) -> Any:
    """A sync app that only enqueues (the tasks are defined in the worker processes)."""
    from qtasks import QueueTasks
    from qtasks.configs.config import QueueConfig

    settings: dict[str, Any] = {
        "enqueue_unknown_tasks": True,
        "socket_timeout": 1.0,
        "block_timeout": 0.5,
        **config,
    }
    return QueueTasks(name=name, broker_url=url, config=QueueConfig(**settings))


def enqueue_to(app: Any, queue: str, calls: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    """Enqueue `(task, args)` calls to `queue` in one round trip; their ids."""
    broker = app.broker
    envs = [broker.make_envelope(name, args=args, queue=queue) for name, args in calls]
    return [str(task.uuid) for task in broker.add_many(envs)]


def admin(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def registered_pids(app: Any) -> set[int]:
    """Pids in the live-worker registry (written once a worker consumes)."""
    found = app.broker.storage.global_config.get_all("workers")
    return {int(info["pid"]) for info in found.values()}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- the ledger -------------------------------------------------------------------------------


@dataclass
class Event:
    kind: str
    task_id: str
    key: str
    token: str
    pid: int
    at: float
    detail: str


@dataclass
class Execution:
    """One run of a task under one lease token."""

    task_id: str
    token: str
    pid: int
    start: float
    end: float | None = None
    status: str | None = None
    acked: bool = False


class Ledger:
    """The append-only evidence file the workers write (see chaos_app.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def events(self) -> list[Event]:
        out = []
        for line in self.path.read_text().splitlines():
            parts = line.split(" ", 6)
            if len(parts) != 7:
                continue  # cannot happen with single O_APPEND writes; never trust it blindly
            kind, task_id, key, token, pid, at, detail = parts
            out.append(Event(kind, task_id, key, token, int(pid), float(at), detail))
        return out

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events() if e.kind == kind)

    def ids(self, kind: str) -> set[str]:
        return {e.task_id for e in self.events() if e.kind == kind}

    def executions(self) -> dict[str, list[Execution]]:
        """Per task id, its runs in start order (a run = a `start` line and its token)."""
        runs: dict[tuple[str, str], Execution] = {}
        order: dict[str, list[Execution]] = defaultdict(list)
        for e in self.events():
            if e.kind == "start":
                run = Execution(e.task_id, e.token, e.pid, e.at)
                runs[(e.task_id, e.token)] = run
                order[e.task_id].append(run)
            elif (e.task_id, e.token) in runs:
                run = runs[(e.task_id, e.token)]
                if e.kind == "end":
                    run.end, run.status = e.at, e.detail
                elif e.kind == "ack":
                    run.acked = True
        return dict(order)

    def acks(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for e in self.events():
            if e.kind == "ack":
                out[e.task_id] += 1
        return dict(out)


# -- the checker ------------------------------------------------------------------------------


@dataclass
class Faults:
    """What a scenario injected: the checker explains extra executions with it (I3)."""

    pids: set[int] = field(default_factory=set)
    """Worker processes killed, paused or stopped: their unacked runs may be repeated."""
    windows: list[tuple[float, float]] = field(default_factory=list)
    """Wall-clock spans of Redis-level faults (outage, stall, partition)."""
    count: int = 0

    def add_pid(self, pid: int) -> None:
        self.pids.add(pid)
        self.count += 1

    def add_window(self, start: float, end: float) -> None:
        self.windows.append((start, end))
        self.count += 1


@dataclass
class Report:
    tasks: int
    lost: list[str]
    unexpected: list[str]
    dup_records: list[str]
    dup_exec: int
    dup_exec_unexplained: list[str]
    redelivered: int
    placement: dict[str, int]
    misplaced: list[str]
    orphans: list[str]

    def figures(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "lost": len(self.lost),
            "unexpected": len(self.unexpected),
            "dup_records": len(self.dup_records),
            "dup_exec": self.dup_exec,
            "dup_exec_explained": self.dup_exec - len(self.dup_exec_unexplained),
            "redelivered": self.redelivered,
            "placement": self.placement,
        }

    def assert_clean(self, *, at_rest: str | None = "terminal") -> None:
        """I1, I2, I3 and I4: nothing lost or unexpected, one final record each, every extra
        run explained by a fault, each id in exactly one place (`at_rest`, if given)."""
        assert not self.lost, f"lost: {self.lost[:10]}"
        assert not self.unexpected, f"unexpected: {self.unexpected[:10]}"
        assert not self.dup_records, f"two final writes: {self.dup_records[:10]}"
        assert not self.dup_exec_unexplained, f"unexplained runs: {self.dup_exec_unexplained[:10]}"
        assert not self.misplaced, f"not in exactly one place: {self.misplaced[:10]}"
        assert not self.orphans, f"orphaned leases: {self.orphans[:10]}"
        if at_rest is not None:
            assert self.placement == {at_rest: self.tasks}, self.placement


def check(
    url: str,
    ids: Iterable[str],
    ledger: Ledger,
    faults: Faults | None = None,
    *,
    prefix: str = PREFIX,
    queues: Iterable[str] = ("default",),
) -> Report:
    """Compare acked enqueues (`ids`) with what Redis and the ledger hold.

    lost = enqueued ids without a final record; unexpected = final records nobody enqueued
    (retry children excepted: they point at their parent); dup_records = ids whose final record
    was written twice (two `ack` lines); dup_exec = runs beyond the first; a repeated run is
    explained when its process was hit by a fault (and never acked) or it overlapped a Redis
    fault window, and it is never explained once an earlier run had acked.
    """
    faults = faults or Faults()
    wanted = list(dict.fromkeys(ids))
    client = admin(url)
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for task_id in wanted:
        pipe.hmget(f"{prefix}:task:{task_id}", "status", "recoveries")
        pipe.zscore(f"{prefix}:lease", task_id)
        pipe.zscore(f"{prefix}:dead", task_id)
        for q in queues:
            pipe.zscore(f"{prefix}:q:{q}", task_id)
            pipe.zscore(f"{prefix}:d:{q}", task_id)
    replies = pipe.execute()
    width = 3 + 2 * len(queues)
    placement: dict[str, int] = defaultdict(int)
    lost, misplaced = [], []
    redelivered = 0
    for n, task_id in enumerate(wanted):
        (status, recoveries), lease, dead, *queued = replies[n * width : (n + 1) * width]
        status = status.decode() if status else None
        redelivered += int(recoveries or 0)
        places = []
        if any(queued[0::2]):
            places.append("queued")
        if any(queued[1::2]):
            places.append("delayed")
        if lease is not None:
            places.append("leased")
        if dead is not None:
            places.append("dead")  # a dead letter also has its (error) record: one place
        elif status in FINAL:
            places.append("terminal")
        if status not in FINAL and dead is None:
            lost.append(task_id)
        if len(places) != 1:
            misplaced.append(f"{task_id}:{'+'.join(places) or 'nowhere'}")
        placement["+".join(places) or "nowhere"] += 1
    expected = set(wanted)
    unexpected = []
    for key in client.scan_iter(f"{prefix}:task:*", count=1000):
        task_id = key.decode().split(":", 2)[2]
        if task_id in expected:
            continue
        fields = client.hmget(key, "status", "retry_parent_uuid", "extra")
        if fields[0] and fields[0].decode() in FINAL and not is_child(fields):
            unexpected.append(task_id)
    acks = ledger.acks()
    dup_records = [t for t in wanted if acks.get(t, 0) > 1]
    dup_exec = 0
    unexplained = []
    for task_id, runs in ledger.executions().items():
        if task_id not in expected or len(runs) < 2:
            continue
        dup_exec += len(runs) - 1
        acked_before = False
        for run in runs:
            if acked_before:
                unexplained.append(f"{task_id}: ran again after an ack")
            elif not run.acked and not explained(run, faults):
                unexplained.append(f"{task_id}: run by {run.pid} at {run.start:.3f} not acked")
            acked_before = acked_before or run.acked
    owners = client.hgetall(f"{prefix}:owner")
    leased = {m.decode() for m in client.zrange(f"{prefix}:lease", 0, -1)}
    orphans = [k.decode() for k in owners if k.decode() not in leased]
    return Report(
        tasks=len(wanted),
        lost=lost,
        unexpected=unexpected,
        dup_records=dup_records,
        dup_exec=dup_exec,
        dup_exec_unexplained=unexplained,
        redelivered=redelivered,
        placement=dict(placement),
        misplaced=misplaced,
        orphans=orphans,
    )


def is_child(fields: list[Any]) -> bool:
    parent, extra = fields[1], fields[2]
    return bool(parent) or (extra is not None and b"retried_from" in extra)


def explained(run: Execution, faults: Faults) -> bool:
    if run.pid in faults.pids:
        return True
    # A lease can lapse during a Redis fault and for one lease after it.
    return any(start - 0.5 <= run.start <= end + 5.0 for start, end in faults.windows)


def settled(url: str, ids: list[str], prefix: str = PREFIX) -> bool:
    """Every id has a final record and no lease is held: the system is at rest."""
    client = admin(url)
    if client.zcard(f"{prefix}:lease"):
        return False
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(f"{prefix}:task:{task_id}", "status")
    return all(s is not None and s.decode() in FINAL for s in pipe.execute())


def final_count(url: str, prefix: str = PREFIX) -> int:
    """Final records written so far (the status indexes; cheap enough to poll)."""
    client = admin(url)
    pipe = client.pipeline(transaction=False)
    for status in FINAL:
        pipe.zcard(f"{prefix}:idx:status:{status}")
    return sum(pipe.execute())


# -- injection ------------------------------------------------------------------------------


class Touch:
    """Unpickling this runs `touch <path>`: the canary of a worker that trusts pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def dead_reasons(app: Any) -> dict[str, str]:
    return {entry.uuid: entry.reason for entry in app.broker.list_dead(limit=100)}


def inject(client: Any, task_id: str, payload: bytes, queue: str = "default") -> None:
    """What an attacker with write access to Redis could put straight into a queue."""
    client.hset("tq:msg", task_id, payload)
    client.zadd(f"tq:q:{queue}", {task_id: 0})
