"""Every Lua script of the package, by name (the key schema is in `keys.py`; the scripts are in
the `_lua_*` modules by concept).

Conventions shared by all scripts:

* Every key comes in `KEYS[]`; broker scripts start with the task-state block
  `KEYS[1..6] = lease, owner, msg, meta, recov, cancel`. Scripts that write records get the
  index block (idx:all then the six status indexes) at a position named `I` in the script.
* Time comes from the server (`TIME`), never from client clocks: lease deadlines, eta and
  expiries all use one clock.
* Work is O(batch): no script scans a whole queue.
* Out of memory (`maxmemory` + `noeviction`): producer scripts (enqueue, record put, config set)
  start with a write that Redis refuses under OOM, so they fail before writing anything and the
  producer gets `QueueFullError`. Worker scripts (claim, finish, requeue, reap, dead letter)
  start with a harmless non-allocating write (`allow_oom`): once a script has written, Redis
  lets it finish, so workers keep draining the queue (which frees memory) during OOM. Redis 6.2
  has no `#!lua flags=allow-oom`, hence the trick.
* Replies are flat arrays of strings and integers (the same in RESP2 and RESP3).
"""

from __future__ import annotations

import re

from qtasks.redis._lua_admin import PURGE_DEAD, PURGE_QUEUE, RETRY_DEAD, STATS
from qtasks.redis._lua_prelude import PRELUDE
from qtasks.redis._lua_queue import (
    CLAIM,
    ENQUEUE,
    FINISH,
    FINISH_MANY,
    HEARTBEAT,
    REQUEUE,
    STARTED,
)
from qtasks.redis._lua_records import (
    CONFIG_DELETE,
    CONFIG_GET_ALL,
    CONFIG_PRELUDE,
    CONFIG_SET,
    COUNT,
    PRUNE,
    PUT,
    UPDATE,
    UPDATE_MANY,
)
from qtasks.redis._lua_recovery import CANCEL, DEAD_LETTER, REAP, REAP_SCAN


def _with_helpers(body: str) -> str:
    """`body` after the prelude definitions it uses, directly or through each other.

    Redis runs a script's whole source on every call, so every helper defined is a closure
    built per call: sending only the used ones took ENQUEUE from about 8 to 5 us in Redis.
    The prelude is split at blank lines; each block defines the locals it starts with.
    """
    blocks = [b for b in (PRELUDE + "\n" + CONFIG_PRELUDE).split("\n\n") if b.strip()]
    defined = [set(_DEFINES.findall(block)) for block in blocks]
    used: set[int] = set()
    text = body
    while True:
        found = {
            i
            for i, names in enumerate(defined)
            if i not in used and any(re.search(rf"\b{n}\b", text) for n in names)
        }
        if not found:
            break
        used |= found
        text += "".join(blocks[i] for i in found)
    return "".join(blocks[i].strip("\n") + "\n\n" for i in sorted(used)) + body.lstrip("\n")


_DEFINES = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)

SOURCES: dict[str, str] = {
    name: _with_helpers(body)
    for name, body in {
        "ENQUEUE": ENQUEUE,
        "CLAIM": CLAIM,
        "HEARTBEAT": HEARTBEAT,
        "STARTED": STARTED,
        "FINISH": FINISH,
        "FINISH_MANY": FINISH_MANY,
        "REQUEUE": REQUEUE,
        "REAP_SCAN": REAP_SCAN,
        "REAP": REAP,
        "DEAD_LETTER": DEAD_LETTER,
        "CANCEL": CANCEL,
        "STATS": STATS,
        "RETRY_DEAD": RETRY_DEAD,
        "PURGE_DEAD": PURGE_DEAD,
        "PURGE_QUEUE": PURGE_QUEUE,
        "PUT": PUT,
        "UPDATE": UPDATE,
        "UPDATE_MANY": UPDATE_MANY,
        "COUNT": COUNT,
        "PRUNE": PRUNE,
        "CONFIG_SET": CONFIG_SET,
        "CONFIG_GET_ALL": CONFIG_GET_ALL,
        "CONFIG_DELETE": CONFIG_DELETE,
    }.items()
}
"""Full source of each script, prelude included, by name."""
