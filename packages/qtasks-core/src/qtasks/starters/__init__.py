"""`qtasks.starters`: starters, which start and stop components in order.

Names of installed components resolve through the entry-point group `qtasks.starters`
(`from qtasks.starters import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from typing import Any

from qtasks import _discovery
from qtasks.starters.base import BaseStarter

__all__ = ["BaseStarter"]

_GROUP = "qtasks.starters"


def __getattr__(name: str) -> Any:
    return _discovery.facade_getattr(__name__, _GROUP, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_discovery.names(_GROUP)})
