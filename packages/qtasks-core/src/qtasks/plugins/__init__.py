"""`qtasks.plugins`: `BasePlugin`, the plugin host, and the built-in plugins.

Third-party pluggy plugins are found in the entry-point group `qtasks.plugins`; their names
resolve here too (`from qtasks.plugins import <name>`).
"""

from __future__ import annotations

from qtasks import _discovery
from qtasks.plugins.base import BasePlugin
from qtasks.plugins.builtin.depends import DependsPlugin
from qtasks.plugins.builtin.retry import RetryPlugin
from qtasks.plugins.builtin.state import StatePlugin
from qtasks.plugins.manager import PluginHost

__all__ = ["BasePlugin", "DependsPlugin", "PluginHost", "RetryPlugin", "StatePlugin"]

__getattr__, __dir__ = _discovery.facade(__name__, "qtasks.plugins", globals())
