"""`qtasks.asyncio.QueueTasks`: the asyncio app (AsyncWorker, coroutine methods)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar

from qtasks._drive import run_async
from qtasks.apps.base import BaseQueueTasks
from qtasks.registries.handles import TaskCls
from qtasks.schemas.task import Task


class QueueTasks(BaseQueueTasks):
    """The asyncio app. `async with app:` runs its worker in the current loop for the block."""

    is_async: ClassVar[bool] = True

    async def add_task(
        self,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task | None:
        """Enqueue `task_name(*args, **kwargs)`; with `timeout`, wait for its final record
        (following retries) and return it, or None on timeout."""
        return await run_async(self._enqueue_flow(task_name, args, kwargs, priority, timeout))

    async def enqueue(
        self,
        task_name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Task | None:
        """Enqueue with options (`priority`, `timeout`, `eta`, `delay`, `queue`, `extra`,
        `headers`), without reserving keyword names of the task."""
        return await run_async(self._options_flow(task_name, args, kwargs, options))

    async def add_tasks(self, calls: Iterable[TaskCls | tuple[Any, ...]]) -> list[Task]:
        """Bulk enqueue: every call is validated before anything is written, then written in
        one broker round trip (or, with qtasks-redis, streamed calls of 50)."""
        return await run_async(self._bulk_flow(calls))

    async def get(self, uuid: Any) -> Task | None:
        return await run_async(self._get_flow(str(uuid)))

    async def wait(self, uuid: Any, timeout: float = 100) -> Task | None:
        return await run_async(self._wait_flow(str(uuid), timeout))

    _wait_async = wait

    async def cancel(self, uuid: Any, reason: str | None = None) -> str:
        """Cancel a task: a queued one never starts; a running one is cancelled; one waiting for
        its retry has the retry cancelled. Returns 'cancelled', 'signalled', 'final' or
        'unknown'."""
        return await run_async(self._cancel_flow(str(uuid), reason))

    async def retry(self, uuid: Any) -> Task | None:
        """Run a failed, cancelled or dead-lettered task again (see `BaseQueueTasks`)."""
        return await run_async(self._retry_flow(str(uuid)))

    async def ping(self, server: bool = True) -> bool:
        return await run_async(self._ping_flow(server))

    async def flush_all(self) -> None:
        await run_async(self._flush_flow())

    # -- running --------------------------------------------------------------------------------
    async def start(self, starter: Any = None, num_workers: int = 1) -> None:
        """Start the worker in the running loop; returns once it consumes."""
        self._merge_shared()
        self._use_starter(starter)
        await self.starter.start(num_workers, plugins=self.plugins.base_plugins, app=self)

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop: running tasks get `grace` seconds (default config.shutdown_grace)."""
        await run_async(self._stop_flow())
        await self.starter.stop(grace, plugins=self.plugins.base_plugins)

    def run_forever(
        self,
        starter: Any = None,
        num_workers: int = 4,
        reset_config: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Run until SIGTERM or SIGINT (the first drains, a second stops at once)."""
        if loop is not None:
            loop.run_until_complete(self.serve(starter, num_workers))
        else:
            asyncio.run(self.serve(starter, num_workers))

    async def serve(self, starter: Any = None, num_workers: int = 4) -> None:
        """`run_forever` for callers already in a loop."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        on_signal = self._signal_handler(stop.set)
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        try:
            await self.start(starter, num_workers)
            await stop.wait()
            await self.stop()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def __aenter__(self) -> QueueTasks:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
