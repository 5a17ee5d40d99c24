"""`QtasksInstrumentor`: the OpenTelemetry way to switch the plugin on for every app.

`QtasksInstrumentor().instrument()` (or `opentelemetry-instrument`, through the
`opentelemetry_instrumentor` entry point) hooks into app construction (`on_app_created`), so
every app made afterwards gets one shared `OpenTelemetryPlugin`; `uninstrument()` removes the
hook, and the plugin from those apps. It follows
`opentelemetry.instrumentation.BaseInstrumentor`'s interface (a singleton with
`instrument(**kwargs)`, `uninstrument(**kwargs)`, `is_instrumented_by_opentelemetry`,
`instrumentation_dependencies()`), which is all the auto-instrumentation loader calls, without
depending on `opentelemetry-instrumentation`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Collection
from typing import Any, ClassVar

from qtasks.apps.base import BaseQueueTasks, on_app_created
from qtasks.otel.plugin import OpenTelemetryPlugin

log = logging.getLogger("qtasks.otel")

PLUGIN_NAME = "qtasks.otel"


class QtasksInstrumentor:
    """Instrument every `QueueTasks` app created after `instrument()`.

    Keyword arguments of `instrument()`: `tracer_provider`, `meter_provider` (as for
    `OpenTelemetryPlugin`); others, such as the loader's `skip_dep_check`, are ignored.
    Apps that already exist are not changed: add `OpenTelemetryPlugin()` to them yourself.
    """

    _instance: ClassVar[QtasksInstrumentor | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(cls) -> QtasksInstrumentor:
        with cls._lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._plugin = None
                instance._stop = None
                instance._apps = weakref.WeakSet()
                cls._instance = instance
            return cls._instance

    _plugin: OpenTelemetryPlugin | None
    _stop: Callable[[], None] | None
    _apps: weakref.WeakSet[BaseQueueTasks]

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("qtasks-core >= 2.0",)

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return self._plugin is not None

    def instrument(self, **kwargs: Any) -> None:
        with self._lock:
            if self._plugin is not None:
                log.warning("qtasks is already instrumented")
                return
            plugin = OpenTelemetryPlugin(
                tracer_provider=kwargs.get("tracer_provider"),
                meter_provider=kwargs.get("meter_provider"),
            )
            apps = self._apps

            def equip(app: BaseQueueTasks) -> None:
                if not app.plugins.pm.has_plugin(PLUGIN_NAME):
                    app.plugins.add_plugin(plugin, name=PLUGIN_NAME)
                    apps.add(app)

            self._plugin, self._stop = plugin, on_app_created(equip)

    def uninstrument(self, **kwargs: Any) -> None:
        with self._lock:
            if self._plugin is None or self._stop is None:
                return
            self._stop()
            for app in list(self._apps):
                self._plugin.remove_from(app)  # and its producer-span helper
            self._apps = weakref.WeakSet()
            self._plugin = self._stop = None
