"""`qtasks.storages`: storages, which keep task records.

Names of installed components resolve through the entry-point group `qtasks.storages`
(`from qtasks.storages import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from typing import Any

from qtasks import _discovery
from qtasks.storages.base import AsyncStorage, BaseStorage, SyncStorage

__all__ = ["AsyncStorage", "BaseStorage", "SyncStorage"]

_GROUP = "qtasks.storages"


def __getattr__(name: str) -> Any:
    return _discovery.facade_getattr(__name__, _GROUP, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_discovery.names(_GROUP)})
