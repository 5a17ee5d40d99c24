"""`Component`: name, config, logger, events and the plugin host every component carries."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from qtasks.plugins.manager import PluginHost

if TYPE_CHECKING:
    from qtasks.configs.config import QueueConfig
    from qtasks.events import Events


class Component:
    """Base of Broker, Storage, GlobalConfig, Worker and Starter.

    `is_async` says which app flavour the component serves; `component` is its plugin scope
    (the `component=` of `add_plugin`). When an app assembles components it hands them one
    shared `PluginHost`, config and events, so a plugin added anywhere sees the whole app.
    """

    is_async: ClassVar[bool] = False
    component: ClassVar[str] = "app"

    def __init__(
        self,
        name: str = "QueueTasks",
        log: logging.Logger | None = None,
        config: QueueConfig | None = None,
        events: Events | None = None,
    ) -> None:
        # Imported here: qtasks.configs imports this module (its facade holds the bases).
        from qtasks.configs.config import QueueConfig

        self.name = name
        self.config = config if config is not None else QueueConfig()
        self.log = log if log is not None else logging.getLogger(f"qtasks.{self.component}")
        self.events = events
        self.plugins = PluginHost()

    def add_plugin(self, plugin: Any, trigger_names: list[str] | None = None) -> None:
        """Register a plugin for this component's triggers (see `PluginHost.add_plugin`)."""
        self.plugins.add_plugin(plugin, trigger_names, component=self.component)

    def update_config(self, config: QueueConfig) -> None:
        self.config = config

    def bind(self, plugins: PluginHost, config: QueueConfig, events: Events | None) -> None:
        """Join an app: take its plugin host (keeping plugins added here), config and events."""
        plugins.adopt(self.plugins)
        self.plugins = plugins
        self.update_config(config)
        if events is not None:
            self.events = events

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"
