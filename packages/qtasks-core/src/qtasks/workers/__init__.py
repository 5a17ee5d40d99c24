"""`qtasks.workers`: workers, which run tasks.

Names of installed components resolve through the entry-point group `qtasks.workers`
(`from qtasks.workers import X` works once the distribution providing X is installed).
"""

from __future__ import annotations

from qtasks import _discovery
from qtasks.workers.base import BaseWorker

__all__ = ["BaseWorker"]

__getattr__, __dir__ = _discovery.facade(__name__, "qtasks.workers", globals())
