from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qtasks-sentry")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
