"""Task ids: random (version 4) UUIDs, made without `uuid.UUID.__init__`.

`uuid.uuid4()` builds its UUID through `UUID.__init__`, which accepts five input forms and
checks each, and `str()` then formats it: about 1.9 us per enqueue here. The same 16 random
bytes from `os.urandom` (no buffer kept: a buffer would repeat its ids in a forked child), the
same version and variant bits and the same text take about 1.35 us. The object is an ordinary
`uuid.UUID`: equal, hashable and printable as one made by `uuid4()`.
"""

from __future__ import annotations

import os
from uuid import UUID, SafeUUID

_new = object.__new__
_set = object.__setattr__  # UUID is immutable: its own __init__ sets its slots this way
_UNKNOWN = SafeUUID.unknown


def new_task_id() -> tuple[UUID, str]:
    """A fresh random UUID and its canonical text (`str(uuid)`)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4, as `UUID(bytes=..., version=4)` sets it
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    made = _new(UUID)
    _set(made, "int", int.from_bytes(raw, "big"))
    _set(made, "is_safe", _UNKNOWN)
    h = raw.hex()
    return made, f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
