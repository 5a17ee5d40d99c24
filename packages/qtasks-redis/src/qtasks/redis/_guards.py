"""Guards a worker's broker runs against Redis setups that lose tasks without an error.

* **Eviction policy** (at start): with a `maxmemory-policy` other than `noeviction`, a Redis
  under memory pressure silently deletes keys, and with them queued tasks, leases and records.
  The worker refuses to start unless `config.allow_eviction` turns the refusal into a warning.
* **Data loss** (at start and on every reaper tick): an epoch key holds a random token. When it
  is gone or changed, Redis lost this app's data (a restart without persistence, a failover to an
  empty replica, a flush); tasks queued or leased before that cannot be recovered, and the worker
  says so once, as an error, instead of leaving operators to infer it from missing results.

Both use only commands a least-privilege ACL user has (GET and SET on the prefix); reading the
policy needs CONFIG or INFO, which such a user lacks, and then the check is skipped.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from functools import partial
from typing import Any

import redis.exceptions as rex
from qtasks._drive import Flow
from qtasks.exc import ConfigError
from qtasks.redis.connection import text


def eviction_policy_flow(client: Any) -> Flow[str | None]:
    """The server's `maxmemory-policy`, or None when this user may not read it."""
    try:
        found = yield partial(client.config_get, "maxmemory-policy")
        for value in dict(found).values():
            return text(value)
    except rex.ResponseError:  # NOPERM: CONFIG is in @dangerous
        pass
    try:
        info = yield partial(client.info, "memory")
    except rex.ResponseError:  # NOPERM: so is INFO
        return None
    value = dict(info).get("maxmemory_policy")
    return None if value is None else text(value)


def guard_eviction_flow(client: Any, allow: bool, log: logging.Logger) -> Flow[None]:
    policy = yield from eviction_policy_flow(client)
    if policy is None:
        log.info(
            "cannot read Redis maxmemory-policy (this user may not run CONFIG or INFO); "
            "make sure it is noeviction, or Redis may evict queued tasks"
        )
        return
    if policy == "noeviction":
        return
    message = (
        f"Redis maxmemory-policy is {policy}: under memory pressure Redis would evict keys, "
        "and with them queued tasks, leases and records. Set maxmemory-policy noeviction (a "
        "full Redis then refuses enqueues with QueueFullError), or set config.allow_eviction "
        "(QTASKS_ALLOW_EVICTION=1) to run anyway"
    )
    if not allow:
        raise ConfigError(message)
    log.warning(message)


class Epoch:
    """The app's epoch token as this broker last saw it (see the module docstring)."""

    def __init__(self, key: str, log: logging.Logger) -> None:
        self.key = key
        self.log = log
        self.seen: str | None = None

    def flow(self, client: Any) -> Flow[None]:
        """Read (or create) the token; log once if it differs from the one seen before.
        Transient errors propagate (the caller waits out outages)."""
        try:
            current = yield partial(client.get, self.key)
            if current is None:
                fresh = uuidlib.uuid4().hex
                created = yield partial(client.set, self.key, fresh, nx=True)
                # Another worker may have written its token first: then that one holds.
                current = fresh if created else (yield partial(client.get, self.key))
        except rex.ResponseError:  # out of memory refuses the SET: look again next tick
            return
        if current is None:
            return
        value = text(current)
        if self.seen is not None and value != self.seen:
            self.log.error(
                "Redis data loss detected: the epoch key %s is gone or new (Redis restarted "
                "without persistence, failed over to an empty replica, or was flushed); "
                "tasks queued or running before that are lost",
                self.key,
            )
        self.seen = value
