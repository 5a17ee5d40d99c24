"""Command packing for the asyncio client, in C where hiredis is installed.

redis-py's sync connections pack commands with hiredis when it is installed; its asyncio
connections always pack in Python, re-joining the whole buffer for every argument. qtasks' calls
are Lua scripts with 15-30 arguments (the keys each script touches, then its data), so packing
was about 40 us of every enqueue, more than the script itself spends in Redis. The asyncio pool
here makes its connections from a subclass that packs with `hiredis.pack_command`, exactly as
redis-py's `HiredisRespSerializer` does for sync connections; without hiredis nothing changes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache
from typing import Any

from redis.exceptions import DataError


def _hiredis_packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    try:
        from hiredis import pack_command
    except ImportError:  # pragma: no cover - a dependency, but an install without it still works
        return None
    return pack_command


_PACK = _hiredis_packer()


class _HiredisPacking:
    """Mixin over a redis-py asyncio Connection class (TCP, TLS or Unix socket)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py: a command name may carry literal arguments ("CONFIG GET").
        first = args[0]
        if isinstance(first, str):
            args = tuple(first.encode().split()) + args[1:]
        elif b" " in first:
            args = tuple(first.split()) + args[1:]
        args = tuple(bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args)
        try:
            return [_PACK(args)]  # type: ignore[misc]  # only installed when present
        except TypeError:
            _, value, traceback = sys.exc_info()
            raise DataError(value).with_traceback(traceback) from None


@cache
def _packing_class(base: type) -> type:
    return type(base.__name__, (_HiredisPacking, base), {"__module__": __name__})


def use_fast_packing(pool: Any) -> None:
    """Make the asyncio `pool`'s future connections pack with hiredis (before it connects)."""
    if _PACK is not None:
        pool.connection_class = _packing_class(pool.connection_class)
