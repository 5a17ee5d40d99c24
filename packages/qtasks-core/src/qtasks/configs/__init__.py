"""`qtasks.configs`: the app config (QueueConfig) and global configs shared across processes.

Names of installed components resolve through the entry-point group `qtasks.global_configs`
(`from qtasks.configs import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from typing import Any

from qtasks import _discovery
from qtasks.configs.base import AsyncGlobalConfig, BaseGlobalConfig, SyncGlobalConfig
from qtasks.configs.config import QueueConfig

__all__ = ["AsyncGlobalConfig", "BaseGlobalConfig", "QueueConfig", "SyncGlobalConfig"]

_GROUP = "qtasks.global_configs"


def __getattr__(name: str) -> Any:
    return _discovery.facade_getattr(__name__, _GROUP, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_discovery.names(_GROUP)})
