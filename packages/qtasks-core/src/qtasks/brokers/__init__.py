"""`qtasks.brokers`: brokers, which receive tasks and hand them to workers.

Names of installed components resolve through the entry-point group `qtasks.brokers`
(`from qtasks.brokers import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from typing import Any

from qtasks import _discovery
from qtasks.brokers.base import AsyncBroker, BaseBroker, SyncBroker

__all__ = ["AsyncBroker", "BaseBroker", "SyncBroker"]

_GROUP = "qtasks.brokers"


def __getattr__(name: str) -> Any:
    return _discovery.facade_getattr(__name__, _GROUP, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_discovery.names(_GROUP)})
