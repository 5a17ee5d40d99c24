"""`qtasks.brokers`: brokers, which receive tasks and hand them to workers.

Names of installed components resolve through the entry-point group `qtasks.brokers`
(`from qtasks.brokers import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from qtasks import _discovery
from qtasks.brokers.base import AsyncBroker, BaseBroker, SyncBroker

__all__ = ["AsyncBroker", "BaseBroker", "SyncBroker"]

__getattr__, __dir__ = _discovery.facade(__name__, "qtasks.brokers", globals())
