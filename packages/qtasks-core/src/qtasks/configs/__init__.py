"""`qtasks.configs`: the app config (QueueConfig) and global configs shared across processes.

Names of installed components resolve through the entry-point group `qtasks.global_configs`
(`from qtasks.configs import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from qtasks import _discovery
from qtasks.configs.base import AsyncGlobalConfig, BaseGlobalConfig, SyncGlobalConfig
from qtasks.configs.config import QueueConfig

__all__ = ["AsyncGlobalConfig", "BaseGlobalConfig", "QueueConfig", "SyncGlobalConfig"]

__getattr__, __dir__ = _discovery.facade(__name__, "qtasks.global_configs", globals())
