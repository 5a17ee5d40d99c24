"""Redis broker, storage and global config for QueueTasks (`redis://`, `rediss://`, `unix://`).

The key schema is in `qtasks.redis.keys`, the Lua scripts in `qtasks.redis.scripts`.
"""

from __future__ import annotations

from qtasks.redis.broker import AsyncRedisBroker, SyncRedisBroker
from qtasks.redis.config import AsyncRedisGlobalConfig, SyncRedisGlobalConfig
from qtasks.redis.storage import AsyncRedisStorage, SyncRedisStorage

__all__ = [
    "AsyncRedisBroker",
    "AsyncRedisGlobalConfig",
    "AsyncRedisStorage",
    "SyncRedisBroker",
    "SyncRedisGlobalConfig",
    "SyncRedisStorage",
]
