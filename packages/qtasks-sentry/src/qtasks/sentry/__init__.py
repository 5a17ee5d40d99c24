"""Sentry error reporting and tracing for QueueTasks.

    from qtasks.sentry import SentryPlugin
    app.add_plugin(SentryPlugin())

or `sentry_sdk.init(dsn=..., integrations=[QtasksIntegration()])`.
"""

from __future__ import annotations

from qtasks.sentry._version import __version__
from qtasks.sentry.integration import QtasksIntegration
from qtasks.sentry.plugin import SentryPlugin

__all__ = ["QtasksIntegration", "SentryPlugin", "__version__"]
