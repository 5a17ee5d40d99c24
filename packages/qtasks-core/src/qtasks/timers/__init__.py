"""`qtasks.timers`: timers, which enqueue tasks on a schedule (qtasks-timer).

Names of installed components resolve through the entry-point group `qtasks.timers`
(`from qtasks.timers import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from qtasks import _discovery
from qtasks.timers.base import BaseTimer

__all__ = ["BaseTimer"]

__getattr__, __dir__ = _discovery.facade(__name__, "qtasks.timers", globals())
