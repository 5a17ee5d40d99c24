"""Timer interface: enqueue tasks on a schedule through an app.

A conforming timer enqueues each scheduled tick once, however many timer processes run (it claims
the tick through the app's GlobalConfig `set_nx`), enqueues through `app.add_task` so plugins see
it, and rejects unknown task names at `add_task`. qtasks-timer implements it on APScheduler.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar


class BaseTimer(ABC):
    is_async: ClassVar[bool] = False

    def __init__(self, app: Any, log: Any = None, config: Any = None) -> None:
        self.app = app
        self.log = log
        self.config = config if config is not None else app.config

    @abstractmethod
    def add_task(self, *args: Any, **kwargs: Any) -> Any:
        """Schedule `task_name(*args, **kwargs)` on `trigger`."""

    @abstractmethod
    def run_forever(self) -> None:
        """Run the schedules until interrupted (blocking)."""

    @abstractmethod
    def start(self) -> Any:
        """Start the schedules in the background (non-blocking)."""

    @abstractmethod
    def stop(self) -> Any:
        """Stop the schedules."""
