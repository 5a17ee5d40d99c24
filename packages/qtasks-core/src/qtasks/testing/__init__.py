"""Test helpers shared by every qtasks package: a real redis-server and pytest fixtures.

Only the standard library is imported here, so `-p qtasks.testing.pytest_plugin` costs
nothing for suites that never ask for Redis, and core keeps no dependency on redis-py.
"""

from __future__ import annotations

from qtasks.testing._resp import RespError, command, pipeline
from qtasks.testing.redis_server import (
    RedisBinaryNotFoundError,
    RedisServer,
    RedisServerError,
    find_redis_server,
)

__all__ = [
    "RedisBinaryNotFoundError",
    "RedisServer",
    "RedisServerError",
    "RespError",
    "command",
    "find_redis_server",
    "pipeline",
]
