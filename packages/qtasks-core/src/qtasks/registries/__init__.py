"""Task definitions, handles, routers and `shared_task`."""

from __future__ import annotations

from qtasks.registries.definition import TaskExecSchema
from qtasks.registries.handles import AsyncTask, AsyncTaskCls, SyncTask, SyncTaskCls, TaskCls
from qtasks.registries.registrar import AsyncRouter, Router, SyncRouter, shared_task

__all__ = [
    "AsyncRouter",
    "AsyncTask",
    "AsyncTaskCls",
    "Router",
    "SyncRouter",
    "SyncTask",
    "SyncTaskCls",
    "TaskCls",
    "TaskExecSchema",
    "shared_task",
]
