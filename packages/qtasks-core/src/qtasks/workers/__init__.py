"""`qtasks.workers`: workers, which run tasks.

Names of installed components resolve through the entry-point group `qtasks.workers`
(`from qtasks.workers import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from typing import Any

from qtasks import _discovery
from qtasks.workers.base import BaseWorker

__all__ = ["BaseWorker"]

_GROUP = "qtasks.workers"


def __getattr__(name: str) -> Any:
    return _discovery.facade_getattr(__name__, _GROUP, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_discovery.names(_GROUP)})
