"""The implicit app of handles made by `shared_task`: the most recently constructed app.

Kept for qtasks 1.7 compatibility; prefer passing an app explicitly.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtasks.apps.base import BaseQueueTasks

_last: weakref.ReferenceType[BaseQueueTasks] | None = None


def set_default_app(app: BaseQueueTasks) -> None:
    global _last  # noqa: PLW0603 - one process-wide slot, as 1.7's app_main
    _last = weakref.ref(app)


def default_app() -> BaseQueueTasks | None:
    return None if _last is None else _last()
