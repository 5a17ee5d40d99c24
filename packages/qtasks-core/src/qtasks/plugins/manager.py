"""The plugin host: the only place that talks to pluggy's untyped `pm.hook`.

Every component fires its triggers through `PluginHost.flow`, a flow (see `qtasks._drive`) that
runs the implementations as a chain: sync components call handlers, async components also await
them. A trigger with no implementation returns at once, so unused triggers cost one dict lookup.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterable
from functools import partial
from types import SimpleNamespace
from typing import Any

import pluggy

from qtasks import hookspecs
from qtasks._drive import Flow, is_awaitable
from qtasks.hookspecs import COMPONENTS, PROJECT, TRIGGER_COMPONENT, TRIGGER_REPLACES, hookimpl
from qtasks.plugins.base import BasePlugin
from qtasks.plugins.triggers import (
    AppTrigger,
    BrokerTrigger,
    ExecutorTrigger,
    GlobalConfigTrigger,
    StarterTrigger,
    StatsTrigger,
    StorageTrigger,
    TimerTrigger,
    WorkerTrigger,
)

log = logging.getLogger("qtasks.plugins")
ENTRY_POINT_GROUP = "qtasks.plugins"
_ALIASES = {"qtasks": "app", "task_executor": "worker", "executor": "worker"}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def disabled_plugin_names() -> set[str]:
    """Names in `QTASKS_DISABLED_PLUGINS` (comma separated)."""
    raw = os.environ.get("QTASKS_DISABLED_PLUGINS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def autoload_enabled() -> bool:
    return not _truthy(os.environ.get("QTASKS_DISABLE_PLUGIN_AUTOLOAD"))


def triggers_of(component: str) -> list[str]:
    return [name for name, owner in TRIGGER_COMPONENT.items() if owner == component]


def _forwarder(plugin: BasePlugin, name: str) -> Any:
    """A function with exactly the spec's parameters that calls `plugin.trigger(name, ...)`.

    pluggy passes an implementation the arguments named in its code object, so the parameters
    must be real; the names come from `qtasks.hookspecs`, never from user input.
    """
    params = list(inspect.signature(getattr(hookspecs, name)).parameters)
    source = (
        f"def {name}({', '.join(params)}):\n"
        f"    return _plugin.trigger({name!r}, {', '.join(f'{p}={p}' for p in params)})\n"
    )
    namespace: dict[str, Any] = {"_plugin": plugin}
    exec(compile(source, f"<qtasks adapter {name}>", "exec"), namespace)
    return namespace[name]


def _adapter(plugin: BasePlugin, names: Iterable[str]) -> SimpleNamespace:
    """A pluggy plugin object whose hook functions forward to `plugin.trigger(name, **kwargs)`."""
    return SimpleNamespace(**{name: hookimpl(_forwarder(plugin, name)) for name in names})


class PluginHost:
    """Wraps a pluggy `PluginManager` for one app (shared by all its components)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.base_plugins: list[BasePlugin] = []
        self._impls: dict[str, list[Any]] = {}

    # -- registration ---------------------------------------------------------------------------
    def add_plugin(
        self,
        plugin: Any,
        trigger_names: list[str] | None = None,
        component: str | None = None,
        name: str | None = None,
    ) -> None:
        """Register a `BasePlugin` (for `component`'s triggers, or `trigger_names`) or any object
        or module with `@hookimpl` functions."""
        if isinstance(plugin, BasePlugin):
            names = self._base_plugin_triggers(plugin, trigger_names, component)
            label = name or f"{plugin.name}@{component or 'app'}#{id(plugin):x}"
            self._register(_adapter(plugin, names), label)
            if plugin not in self.base_plugins:
                self.base_plugins.append(plugin)
            return
        if trigger_names is not None:
            raise TypeError("trigger_names applies to BasePlugin objects, not hookimpl plugins")
        self._register(plugin, name)

    def _base_plugin_triggers(
        self, plugin: BasePlugin, trigger_names: list[str] | None, component: str | None
    ) -> list[str]:
        comp = _ALIASES.get(component or "app", component or "app")
        if comp not in COMPONENTS:
            raise ValueError(f"component must be one of {', '.join(COMPONENTS)}; got {component!r}")
        if trigger_names is None:
            names = triggers_of(comp)
            if type(plugin).trigger is BasePlugin.trigger:
                # Only the handlers can answer: skip the rest so unused triggers stay free.
                names = [n for n in names if n in plugin.handlers]
            return names
        for trig in trigger_names:
            owner = TRIGGER_COMPONENT.get(trig)
            if owner is None:
                raise ValueError(f"unknown trigger {trig!r}; see qtasks.hookspecs for the list")
            if owner != comp:
                raise ValueError(f"trigger {trig!r} is fired by {owner}, not {comp}")
        return list(trigger_names)

    def _register(self, plugin: Any, name: str | None) -> None:
        hooks = 0
        for impl_name in dir(plugin):
            opts = self.pm.parse_hookimpl_opts(plugin, impl_name)
            if opts is None:
                continue
            hooks += 1
            if opts.get("wrapper") or opts.get("hookwrapper"):
                raise TypeError(
                    f"{impl_name}: hook wrappers are not supported; use the before/after triggers"
                )
        if (
            not hooks
        ):  # `add_plugin("otel")` or a class instead of its instance: it would do nothing
            raise TypeError(
                f"{plugin!r} is neither a BasePlugin nor an object or module with @hookimpl "
                "functions"
            )
        self.pm.register(plugin, name=name)
        self._after_change(plugin)

    def _after_change(self, plugin: Any) -> None:
        self._impls.clear()
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            raise TypeError(f"plugin declares a hook qtasks does not have: {exc}") from None

    def unregister(self, plugin: Any) -> None:
        self.pm.unregister(plugin)
        self._impls.clear()

    def load_entry_points(self) -> list[str]:
        """Register `qtasks.plugins` entry points; honours the disable switches. A plugin that
        fails to load is logged and skipped, never fatal. Returns the names registered."""
        if not autoload_enabled():
            return []
        from qtasks._discovery import entry_points

        blocked = disabled_plugin_names()
        loaded: list[str] = []
        for ep in entry_points(ENTRY_POINT_GROUP):
            if ep.name in blocked:
                self.pm.set_blocked(ep.name)
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                self._register(ep.load(), ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the app
                log.warning(
                    "plugin %r (%s) failed to load and is skipped: %s", ep.name, ep.value, exc
                )
                continue
            loaded.append(ep.name)
        return loaded

    def adopt(self, other: PluginHost) -> None:
        """Take over the plugins registered on another host (a component built before the app)."""
        if other is self:
            return
        for name, plugin in other.pm.list_name_plugin():
            if plugin is not None and not self.pm.is_registered(plugin):
                self.pm.register(plugin, name=name)
        for base in other.base_plugins:
            if base not in self.base_plugins:
                self.base_plugins.append(base)
        self._impls.clear()

    # -- firing -----------------------------------------------------------------------------------
    def implementations(self, name: str) -> list[Any]:
        """Implementations in call order (pluggy's: last registered first, tryfirst honoured)."""
        impls = self._impls.get(name)
        if impls is None:
            caller = getattr(self.pm.hook, name)
            impls = self._impls[name] = list(reversed(caller.get_hookimpls()))
        return impls

    def wants(self, name: str) -> bool:
        impls = self._impls.get(name)
        return bool(impls if impls is not None else self.implementations(name))

    def wants_for(self, name: str, task_func: Any) -> bool:
        """`wants`, for an executor trigger fired for one task: False when every
        implementation's plugin declares with `applies_to(task_func)` that it has nothing to do
        for this task (the built-in state and depends plugins, for tasks without them), so the
        trigger's arguments are not even built."""
        for impl in self.implementations(name):
            applies = getattr(impl.plugin, "applies_to", None)
            if applies is None or applies(task_func):
                return True
        return False

    def flow(self, name: str, kwargs: dict[str, Any]) -> Flow[dict[str, Any]]:
        """Run trigger `name` as a chain; returns `kwargs` with the replaced keys."""
        impls = self.implementations(name)
        if not impls:
            return kwargs
        replaces = TRIGGER_REPLACES[name]
        for impl in impls:
            try:
                # Called here, not handed to the driver as a step: most handlers are plain
                # functions, and a step costs a callable and a turn of the driver per handler.
                # An awaitable result (an async handler) becomes a step, which the asyncio
                # driver awaits and the sync one refuses, as for any step.
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
                if is_awaitable(result):
                    result = yield partial(_same, result)
            except Exception:
                log.exception("plugin %r raised on trigger %r; skipped", impl.plugin_name, name)
                continue
            if result is None:
                continue
            if not isinstance(result, dict):
                log.warning(
                    "plugin %r returned %s from %r; expected a dict or None",
                    impl.plugin_name,
                    type(result).__name__,
                    name,
                )
                continue
            for key, value in result.items():
                if key in replaces:
                    kwargs[key] = value
        return kwargs

    # -- one typed method per trigger family (what components call) -------------------------
    def app(self, trigger: AppTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of the app (`qtasks_*`)."""
        return self.flow(trigger, kwargs)

    def broker(self, trigger: BrokerTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of brokers."""
        return self.flow(trigger, kwargs)

    def storage(self, trigger: StorageTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of storages."""
        return self.flow(trigger, kwargs)

    def global_config(self, trigger: GlobalConfigTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of global configs."""
        return self.flow(trigger, kwargs)

    def worker(self, trigger: WorkerTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of workers."""
        return self.flow(trigger, kwargs)

    def executor(self, trigger: ExecutorTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of task executors."""
        return self.flow(trigger, kwargs)

    def starter(self, trigger: StarterTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of starters."""
        return self.flow(trigger, kwargs)

    def stats(self, trigger: StatsTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of stats."""
        return self.flow(trigger, kwargs)

    def timer(self, trigger: TimerTrigger, /, **kwargs: Any) -> Flow[dict[str, Any]]:
        """Fire a trigger of timers."""
        return self.flow(trigger, kwargs)

    def fire_sync(self, name: str, **kwargs: Any) -> dict[str, Any]:
        from qtasks._drive import run_sync

        if not self.wants(name):
            return kwargs
        return run_sync(self.flow(name, kwargs))

    async def fire_async(self, name: str, **kwargs: Any) -> dict[str, Any]:
        from qtasks._drive import run_async

        if not self.wants(name):
            return kwargs
        return await run_async(self.flow(name, kwargs))


def _same(value: Any) -> Any:
    return value
