"""The whole Redis data model of one app, in one place.

Every key starts with the app's prefix (the app name by default, as in qtasks 1.7), so an ACL user
limited to `~prefix:*` and `&prefix:*` can run everything. Scripts receive every key they touch
in `KEYS[]`; no key is derived inside Lua.

Broker (queues and leases)::

    {p}:q:{queue}          ZSET  ready task ids; score = priority * 2^32 + (seq mod 2^32)
    {p}:d:{queue}          ZSET  delayed task ids; score = eta (ms since the epoch)
    {p}:wake:{queue}       LIST  at most one wake-up token; idle workers BLPOP it
    {p}:int:{broker}       LIST  interrupt tokens for one broker's blocked claims (TTL 10 s)
    {p}:queues             SET   every queue name ever used (index, for counts)
    {p}:seq                STRING enqueue counter (FIFO within a priority)
    {p}:epoch              STRING a random token a worker writes if absent; gone or changed
                                 means Redis lost the app's data (see `_guards.py`)
    {p}:msg                HASH  id -> envelope JSON, while queued or leased
    {p}:meta               HASH  id -> "priority\\nqueue\\ntask", while queued or leased
    {p}:lease              ZSET  id -> lease deadline (ms, server clock)
    {p}:owner              HASH  id -> "worker id\\nlease token"
    {p}:recov              HASH  id -> lapsed leases so far; c:id -> crashes while it ran;
                                 s:id -> lease token of a suspect's durable start
    {p}:cancel             HASH  id -> reason, for running tasks asked to stop
    {p}:claim:{claim id}   STRING memo of one claim, so a re-sent claim returns the same
                                 deliveries (TTL lease_timeout)
    {p}:ack:{token}        STRING memo of one final write, so a re-sent finish is a success
                                 (TTL 60 s)
                           Both memos are deleted by the worker's next claim or finish once
                           their reply has arrived, so they do not pile up.
    {p}:finished           HASH  60-field ring "second:count" of finishes (stats)
    {p}:finished:m         HASH  60-field ring "minute:count" of finishes (the last hour's
                                 throughput, for the web view)
    {p}:dead               ZSET  dead-lettered id -> when (ms); capped, oldest dropped
    {p}:dead:info          HASH  id -> "reason\\nat\\n<len(task)>\\n<task><sample>"
    channel {p}:cancel     PUB/SUB  "id\\nreason": running tasks to interrupt

Storage (records)::

    {p}:task:{id}          HASH  the record (`qtasks.schemas.task.to_mapping`); TTL
                                 `result_ttl` once final, none while queued or running
    {p}:done:{id}          LIST  one token pushed by the final write; result waiters
                                 BLMOVE it onto itself, which wakes all of them (TTL)
    {p}:idx:all            ZSET  id -> score: the record's expiry (ms) once final (2^51 +
                                 finish time without a TTL), 2^52 + last change while queued
                                 or running; so pruning is ZREMRANGEBYSCORE -inf now, and a
                                 reversed range lists live tasks, then the latest finished
    {p}:idx:status:{s}     ZSET  the same, per status (new, process, success, ...)
    {p}:idx:name:{task}    ZSET  the same, per task name

Global config::

    {p}:{config}:{name}       HASH  key -> JSON value (1.7: `{name}:GlobalConfig:{x}`)
    {p}:{config}~ttl:{name}   ZSET  key -> expiry (ms) for keys set with a TTL; when every key
                                    of a hash has one, both keys expire with the last
    {p}:{config}~names        SET   names that hold keys (index, for listing names)
    {p}:{config}~nx:{nonce}   STRING memo of an only-new set, so a re-sent one still reports
                                    that it stored (TTL 60 s)

    (`~` keeps the side keys apart from any `{name}` a user picks.)

Queues, indexes, wake lists and the epoch are the only keys without a TTL; records of
unfinished tasks live exactly as long as their queue entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

STATUSES = ("new", "process", "success", "error", "cancel", "retry")
"""Statuses with an index, in the order the scripts receive their index keys."""
FINAL = frozenset({"success", "error", "cancel", "retry"})
PRIORITY_LIMIT = 2**20
"""|priority| is clamped below this, so that priority * 2^32 + seq stays an exact double."""
DONE_TTL_MS = 300_000
"""How long a final-write token stays for result waiters that read the record just before."""
MEMO_TTL_MS = 60_000


def glob_escape(text: str) -> str:
    """`text` as a literal inside a SCAN MATCH pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


@dataclass(frozen=True)
class BrokerKeys:
    prefix: str

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def ready(self, queue: str) -> str:
        return self._k("q", queue)

    def delayed(self, queue: str) -> str:
        return self._k("d", queue)

    def wake(self, queue: str) -> str:
        return self._k("wake", queue)

    def interrupt(self, broker_id: str) -> str:
        return self._k("int", broker_id)

    def claim_memo(self, claim_id: str) -> str:
        return self._k("claim", claim_id)

    def ack_memo(self, token: str) -> str:
        return self._k("ack", token)

    @property
    def queues(self) -> str:
        return self._k("queues")

    @property
    def seq(self) -> str:
        return self._k("seq")

    @property
    def epoch(self) -> str:
        # Not in `families`: `flush_all` is deliberate, not a loss to report.
        return self._k("epoch")

    @property
    def msg(self) -> str:
        return self._k("msg")

    @property
    def meta(self) -> str:
        return self._k("meta")

    @property
    def lease(self) -> str:
        return self._k("lease")

    @property
    def owner(self) -> str:
        return self._k("owner")

    @property
    def recov(self) -> str:
        return self._k("recov")

    @property
    def cancel(self) -> str:
        return self._k("cancel")

    @property
    def finished(self) -> str:
        return self._k("finished")

    @property
    def finished_per_minute(self) -> str:
        return self._k("finished", "m")

    @property
    def dead(self) -> str:
        return self._k("dead")

    @property
    def dead_info(self) -> str:
        return self._k("dead", "info")

    @property
    def cancel_channel(self) -> str:
        return self._k("cancel")

    @property
    def families(self) -> tuple[str, ...]:
        """First key parts that belong to the broker (for `flush` by SCAN)."""
        return (
            "q",
            "d",
            "wake",
            "int",
            "queues",
            "seq",
            "msg",
            "meta",
            "lease",
            "owner",
            "recov",
            "cancel",
            "claim",
            "ack",
            "finished",
            "dead",
        )

    # Key groups in the order the scripts expect them.
    def task_state(self) -> list[str]:
        """lease, owner, msg, meta, recov, cancel: where a queued or leased task lives."""
        return list(self._task_state)

    @cached_property
    def _task_state(self) -> tuple[str, ...]:
        # Built once: every script call of the hot path starts with these keys.
        return (self.lease, self.owner, self.msg, self.meta, self.recov, self.cancel)


@dataclass(frozen=True)
class RecordKeys:
    prefix: str

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def record(self, task_id: str) -> str:
        return self._k("task", task_id)

    def done(self, task_id: str) -> str:
        return self._k("done", task_id)

    @property
    def index_all(self) -> str:
        return self._k("idx", "all")

    def index_status(self, status: str) -> str:
        return self._k("idx", "status", status)

    def index_name(self, task_name: str) -> str:
        return self._k("idx", "name", task_name)

    @property
    def families(self) -> tuple[str, ...]:
        return ("task", "done", "idx")

    def indexes(self) -> list[str]:
        """idx:all then one index per status, in `STATUSES` order."""
        return list(self._indexes)

    @cached_property
    def _indexes(self) -> tuple[str, ...]:
        return (self.index_all, *(self.index_status(s) for s in STATUSES))

    def block(self, task_id: str, task_name: str | None) -> list[str]:
        """The record block of the scripts: record, done, idx:all, 6 status indexes, name
        index (idx:all again when the name is unknown; the script is told)."""
        name_index = self.index_name(task_name) if task_name is not None else self.index_all
        return [self.record(task_id), self.done(task_id), *self.indexes(), name_index]


@dataclass(frozen=True)
class ConfigKeys:
    prefix: str
    config_name: str

    def values(self, name: str) -> str:
        return f"{self.prefix}:{self.config_name}:{name}"

    def expiries(self, name: str) -> str:
        return f"{self.prefix}:{self.config_name}~ttl:{name}"

    @property
    def names(self) -> str:
        return f"{self.prefix}:{self.config_name}~names"

    def nx_memo(self, nonce: str) -> str:
        return f"{self.prefix}:{self.config_name}~nx:{nonce}"
