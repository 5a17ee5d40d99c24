"""`qtasks.timers`: timers, which enqueue tasks on a schedule (qtasks-timer).

Names of installed components resolve through the entry-point group `qtasks.timers`
(`from qtasks.timers import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from typing import Any

from qtasks import _discovery
from qtasks.timers.base import BaseTimer

__all__ = ["BaseTimer"]

_GROUP = "qtasks.timers"


def __getattr__(name: str) -> Any:
    return _discovery.facade_getattr(__name__, _GROUP, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_discovery.names(_GROUP)})
