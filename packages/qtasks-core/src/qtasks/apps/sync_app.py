"""`qtasks.QueueTasks`: the sync app (SyncThreadWorker, blocking calls)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar

from qtasks._drive import run_sync
from qtasks.apps.base import BaseQueueTasks
from qtasks.registries.handles import TaskCls
from qtasks.schemas.task import Task


class QueueTasks(BaseQueueTasks):
    """The sync app. `with app:` runs its worker in background threads for the block."""

    is_async: ClassVar[bool] = False

    def add_task(
        self,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task | None:
        """Enqueue `task_name(*args, **kwargs)`; with `timeout`, wait for its final record
        (following retries) and return it, or None on timeout."""
        return run_sync(self._enqueue_flow(task_name, args, kwargs, priority, timeout))

    def enqueue(
        self,
        task_name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Task | None:
        """Enqueue with options (`priority`, `timeout`, `eta` epoch seconds, `delay` seconds,
        `queue`, `extra`, `headers`), without reserving keyword names of the task."""
        return run_sync(self._options_flow(task_name, args, kwargs, options))

    def add_tasks(self, calls: Iterable[TaskCls | tuple[Any, ...]]) -> list[Task]:
        """Bulk enqueue: `app.add_tasks([t(1), t(2)])` or tuples `(name, args, kwargs,
        priority)`. Every call is validated before anything is written, then written in one
        broker round trip (or, with qtasks-redis, streamed calls of 50)."""
        return run_sync(self._bulk_flow(calls))

    def get(self, uuid: Any) -> Task | None:
        return run_sync(self._get_flow(str(uuid)))

    def wait(self, uuid: Any, timeout: float = 100) -> Task | None:
        return run_sync(self._wait_flow(str(uuid), timeout))

    _wait_sync = wait

    async def _wait_async(self, uuid: str, timeout: float) -> Task | None:
        return await asyncio.to_thread(self.wait, uuid, timeout)

    def cancel(self, uuid: Any, reason: str | None = None) -> str:
        """Cancel a task: a queued one never starts; a running one is marked and its result
        discarded; one waiting for its retry has the retry cancelled. Returns 'cancelled',
        'signalled', 'final' or 'unknown'."""
        return run_sync(self._cancel_flow(str(uuid), reason))

    def retry(self, uuid: Any) -> Task | None:
        """Run a failed, cancelled or dead-lettered task again (see `BaseQueueTasks`)."""
        return run_sync(self._retry_flow(str(uuid)))

    def ping(self, server: bool = True) -> bool:
        return run_sync(self._ping_flow(server))

    def flush_all(self) -> None:
        run_sync(self._flush_flow())

    # -- running --------------------------------------------------------------------------------
    def start(self, starter: Any = None, num_workers: int = 1) -> None:
        """Start the worker in background threads; returns once it consumes."""
        self._merge_shared()
        self._use_starter(starter)
        self.starter.start(num_workers, plugins=self.plugins.base_plugins, app=self)

    def stop(self, grace: float | None = None) -> None:
        """Drain and stop: running tasks get `grace` seconds (default config.shutdown_grace)."""
        run_sync(self._stop_flow())
        self.starter.stop(grace, plugins=self.plugins.base_plugins)

    def run_forever(
        self, starter: Any = None, num_workers: int = 4, reset_config: bool = True
    ) -> None:
        """Run until SIGTERM or SIGINT: the first drains, a second stops at once."""
        stop = threading.Event()
        on_signal = self._signal_handler(stop.set)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            self.start(starter, num_workers)
            stop.wait()
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> QueueTasks:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
