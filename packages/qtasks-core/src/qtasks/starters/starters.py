"""`SyncStarter` and `AsyncStarter`."""

from __future__ import annotations

from typing import Any, ClassVar

from qtasks._drive import run_async, run_sync
from qtasks._periodic import AsyncPeriodic, ThreadPeriodic
from qtasks.starters.base import BaseStarter


class SyncStarter(BaseStarter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._status: ThreadPeriodic | None = None

    def start(
        self,
        num_workers: int = 1,
        reset_config: bool = True,
        plugins: list[Any] | None = None,
        app: Any = None,
    ) -> None:
        """Start everything; returns once the worker consumes (threads run in background)."""
        self._components(app)
        run_sync(self._start_flow(plugins))
        self.worker.start(num_workers)
        self.log.info(
            "%s: worker %s consuming %s",
            self.name,
            self.worker.worker_id,
            ", ".join(self.worker.queues),
        )
        config = self._global_config()
        if config is not None:
            self._status = ThreadPeriodic(
                "qtasks-status",
                lambda: self.config.global_config_status_set_periodic,
                config.heartbeat,
            )
            self._status.start()
        self.started = True

    def stop(self, grace: float | None = None, plugins: list[Any] | None = None) -> None:
        if not self.started:
            return
        self.started = False
        self.log.info("%s: stopping (draining running tasks)", self.name)
        self.worker.stop(grace)
        if self._status is not None:
            self._status.stop()
        self.broker.stop()
        run_sync(self._stop_flow(plugins))


class AsyncStarter(BaseStarter):
    is_async: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._status: AsyncPeriodic | None = None

    async def start(
        self,
        num_workers: int = 1,
        reset_config: bool = True,
        plugins: list[Any] | None = None,
        app: Any = None,
    ) -> None:
        """Start everything in the running loop; returns once the worker consumes."""
        self._components(app)
        await run_async(self._start_flow(plugins))
        await self.worker.start(num_workers)
        self.log.info(
            "%s: worker %s consuming %s",
            self.name,
            self.worker.worker_id,
            ", ".join(self.worker.queues),
        )
        config = self._global_config()
        if config is not None:
            self._status = AsyncPeriodic(
                "qtasks-status",
                lambda: self.config.global_config_status_set_periodic,
                config.heartbeat,
            )
            self._status.start()
        self.started = True

    async def stop(self, grace: float | None = None, plugins: list[Any] | None = None) -> None:
        if not self.started:
            return
        self.started = False
        self.log.info("%s: stopping (draining running tasks)", self.name)
        await self.worker.stop(grace)
        if self._status is not None:
            await self._status.stop()
        await self.broker.stop()
        await run_async(self._stop_flow(plugins))
