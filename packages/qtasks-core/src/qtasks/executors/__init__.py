"""Executors: what runs one task."""

from __future__ import annotations

from qtasks.executors.base import (
    ArgMeta,
    AsyncTaskExecutor,
    BaseTaskExecutor,
    SyncTaskExecutor,
)

__all__ = ["ArgMeta", "AsyncTaskExecutor", "BaseTaskExecutor", "SyncTaskExecutor"]
