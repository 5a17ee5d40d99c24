"""`QtasksIntegration`: qtasks for users who configure Sentry with `sentry_sdk.init`.

    sentry_sdk.init(dsn=..., integrations=[QtasksIntegration()])

Like sentry-sdk's Celery, arq and RQ integrations, `setup_once` hooks into the library once per
process and every hooked path checks at run time whether the current client has the
integration enabled. Here the hook (`on_app_created`) gives every app (those that exist, and
those created later) a `SentryPlugin` that follows the integration's options and does nothing
under a client without it.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import sentry_sdk
from sentry_sdk.integrations import Integration

from qtasks.apps.base import BaseQueueTasks, on_app_created
from qtasks.sentry.plugin import INTEGRATION_PLUGIN_NAME as PLUGIN_NAME
from qtasks.sentry.plugin import SentryPlugin, checked_flag


class QtasksIntegration(Integration):
    """Options: `report_retries` (as for `SentryPlugin`)."""

    identifier = "qtasks"
    origin = f"auto.queue.{identifier}"

    def __init__(self, report_retries: bool = False) -> None:
        self.report_retries = checked_flag(report_retries)

    @staticmethod
    def setup_once() -> None:
        _patch_app_init()
        # Apps made before sentry_sdk.init (at import time, typically) get the plugin too.
        for obj in gc.get_objects():
            if isinstance(obj, BaseQueueTasks):
                _equip(obj)


class _IntegrationPlugin(SentryPlugin):
    """The plugin the integration adds: active while the current client has the integration."""

    def _client(self) -> Any:
        client = sentry_sdk.get_client()
        return client if client.get_integration(QtasksIntegration) is not None else None

    def _reports_retries(self, client: Any) -> bool:
        integration = client.get_integration(QtasksIntegration)
        return bool(integration is not None and integration.report_retries)


_plugin = _IntegrationPlugin()
_lock = threading.Lock()


def _equip(app: BaseQueueTasks) -> None:
    with _lock:
        if not app.plugins.pm.has_plugin(PLUGIN_NAME):
            app.plugins.add_plugin(_plugin, name=PLUGIN_NAME)


def _patch_app_init() -> None:
    on_app_created(_equip)
