"""`qtasks.plugins`: `BasePlugin`, the plugin host, and the built-in plugins.

Third-party pluggy plugins are found in the entry-point group `qtasks.plugins`; their names
resolve here too (`from qtasks.plugins import <name>`).
"""

from __future__ import annotations

from typing import Any

from qtasks import _discovery
from qtasks.plugins.base import BasePlugin
from qtasks.plugins.builtin.depends import DependsPlugin
from qtasks.plugins.builtin.retry import RetryPlugin
from qtasks.plugins.builtin.state import StatePlugin
from qtasks.plugins.manager import PluginHost

__all__ = ["BasePlugin", "DependsPlugin", "PluginHost", "RetryPlugin", "StatePlugin"]

_GROUP = "qtasks.plugins"


def __getattr__(name: str) -> Any:
    return _discovery.facade_getattr(__name__, _GROUP, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_discovery.names(_GROUP)})
