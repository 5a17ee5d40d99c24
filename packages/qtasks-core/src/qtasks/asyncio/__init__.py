"""`from qtasks.asyncio import QueueTasks`: the asyncio app."""

from __future__ import annotations

from qtasks.apps.async_app import QueueTasks

__all__ = ["QueueTasks"]
