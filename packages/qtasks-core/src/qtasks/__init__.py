"""QueueTasks: a task queue built from replaceable components and plugins.

`from qtasks import QueueTasks` (sync) or `from qtasks.asyncio import QueueTasks`.
"""

from __future__ import annotations

# Other distributions ship leaves of this namespace (qtasks.redis, qtasks.timer, ...); extending
# the path lets editable and workspace installs find them. Only qtasks-core ships this file.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from qtasks.apps.base import __version__
from qtasks.apps.sync_app import QueueTasks
from qtasks.enums import TaskStatusEnum
from qtasks.hookspecs import hookimpl
from qtasks.plugins.base import BasePlugin
from qtasks.plugins.builtin.depends import Depends
from qtasks.plugins.builtin.state import AsyncState, State, SyncState
from qtasks.registries.registrar import AsyncRouter, Router, SyncRouter, shared_task
from qtasks.schemas.task import Task

__all__ = [
    "AsyncRouter",
    "AsyncState",
    "BasePlugin",
    "Depends",
    "QueueTasks",
    "Router",
    "State",
    "SyncRouter",
    "SyncState",
    "Task",
    "TaskStatusEnum",
    "__version__",
    "hookimpl",
    "shared_task",
]
