"""qtasks-webview: a web dashboard for QueueTasks that reads the app's Redis directly.

`qtasks -A module:app web` or `qtasks-webview --redis-url ... --name APP`; from Python,
`create_app(Target(name, url), Settings(...))` gives the ASGI app.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qtasks-webview")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

from qtasks.webview.settings import Auth, InsecureBindError, Settings, Target

__all__ = ["Auth", "InsecureBindError", "Settings", "Target", "__version__", "create_app"]


def __getattr__(name: str) -> object:
    # Lazy, so `qtasks --help` (which loads every command plugin) does not import Starlette.
    if name == "create_app":
        from qtasks.webview.server import create_app

        return create_app
    raise AttributeError(name)
