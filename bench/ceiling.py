"""The bare redis-py ceiling: how fast one Python process talks to this Redis at all.

`async`: one awaited INCR at a time on `redis.asyncio`; `sync`: the same on `redis.Redis`;
`pipelined`: INCRs sent in non-transactional pipelines of 100 (sync client); `evalsha`: one
awaited call of a one-line Lua script at a time (what a script-based queue pays per round trip).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import redis
import redis.asyncio as aredis

COUNT = 20_000
PIPE = 100


async def _async(url: str, script: bool) -> float:
    client = aredis.Redis.from_url(url)
    lua = client.register_script("return redis.call('INCR', KEYS[1])")
    for _ in range(500):
        await client.incr("ceiling")
    start = time.perf_counter()
    for _ in range(COUNT):
        if script:
            await lua(["ceiling"], [])
        else:
            await client.incr("ceiling")
    rate = COUNT / (time.perf_counter() - start)
    await client.aclose()
    return rate


def _sync(url: str) -> float:
    client = redis.Redis.from_url(url)
    for _ in range(500):
        client.incr("ceiling")
    start = time.perf_counter()
    for _ in range(COUNT):
        client.incr("ceiling")
    return COUNT / (time.perf_counter() - start)


def _pipelined(url: str) -> float:
    client = redis.Redis.from_url(url)
    total = COUNT * 5
    start = time.perf_counter()
    for _ in range(total // PIPE):
        pipe = client.pipeline(transaction=False)
        for _ in range(PIPE):
            pipe.incr("ceiling")
        pipe.execute()
    return total / (time.perf_counter() - start)


def main() -> None:
    args = common.parser(__doc__ or "").parse_args()
    rate: Any
    if args.command == "async":
        rate = asyncio.run(_async(args.url, False))
    elif args.command == "evalsha":
        rate = asyncio.run(_async(args.url, True))
    elif args.command == "sync":
        rate = _sync(args.url)
    elif args.command == "pipelined":
        rate = _pipelined(args.url)
    else:
        raise SystemExit(f"unknown command {args.command}")
    common.emit({"rate": rate})


if __name__ == "__main__":
    main()
