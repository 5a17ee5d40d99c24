"""Starter: starts and stops an app's components in a defined order.

Start: `starter_start` -> plugins' `start()` -> event `starting` -> global config and storage ->
broker (recovery, clean-up) -> worker (claim loops) -> running-status heartbeat.
Stop: worker (drain within `config.shutdown_grace`) -> broker -> storage and global config ->
`starter_stop` -> event `stopping` -> plugins' `stop()`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qtasks._drive import Flow
from qtasks.base.component import Component


class BaseStarter(Component):
    component: ClassVar[str] = "starter"

    def __init__(
        self, name: str = "QueueTasks", broker: Any = None, worker: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.broker = broker
        self.worker = worker
        self.started = False

    def _components(self, app: Any) -> None:
        if app is not None:
            self.broker = self.broker or app.broker
            self.worker = self.worker or app.worker

    def _global_config(self) -> Any:
        storage = getattr(self.broker, "storage", None)
        return getattr(storage, "global_config", None)

    def _start_flow(self, plugins: list[Any] | None) -> Flow[None]:
        self.config.validate()
        yield from self.plugins.starter("starter_start", starter=self)
        for plugin in plugins if plugins is not None else self.plugins.base_plugins:
            yield plugin.start
        if self.events is not None and self.events.wants("starting"):
            yield from self.events.flow(
                "starting", starter=self, worker=self.worker, broker=self.broker
            )
        yield lambda: self.broker.start(self.worker)

    def _stop_flow(self, plugins: list[Any] | None) -> Flow[None]:
        yield from self.plugins.starter("starter_stop", starter=self)
        if self.events is not None and self.events.wants("stopping"):
            yield from self.events.flow(
                "stopping", starter=self, worker=self.worker, broker=self.broker
            )
        for plugin in plugins if plugins is not None else self.plugins.base_plugins:
            yield plugin.stop
