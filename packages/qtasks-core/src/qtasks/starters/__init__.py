"""`qtasks.starters`: starters, which start and stop components in order.

Names of installed components resolve through the entry-point group `qtasks.starters`
(`from qtasks.starters import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from qtasks import _discovery
from qtasks.starters.base import BaseStarter

__all__ = ["BaseStarter"]

__getattr__, __dir__ = _discovery.facade(__name__, "qtasks.starters", globals())
