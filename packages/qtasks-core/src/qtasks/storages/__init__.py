"""`qtasks.storages`: storages, which keep task records.

Names of installed components resolve through the entry-point group `qtasks.storages`
(`from qtasks.storages import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from qtasks import _discovery
from qtasks.storages.base import AsyncStorage, BaseStorage, SyncStorage

__all__ = ["AsyncStorage", "BaseStorage", "SyncStorage"]

__getattr__, __dir__ = _discovery.facade(__name__, "qtasks.storages", globals())
