"""`State`: an in-process key-value object injected into tasks by annotation.

`def task(state: MyState)` receives a `MyState()` whose data is shared by every task of the
process that asks for `MyState` (one dict per subclass, locked). It is not shared across
processes; use the GlobalConfig for that.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from qtasks.hookspecs import hookimpl


class State:
    _data: ClassVar[dict[str, Any]]
    _lock: ClassVar[threading.Lock]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._data = {}
        cls._lock = threading.Lock()

    def get(self, key: str | None = None, default: Any = None) -> Any:
        with self._lock:
            return dict(self._data) if key is None else self._data.get(key, default)

    def get_all(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._data)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def update(self, **values: Any) -> None:
        with self._lock:
            self._data.update(values)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


State._data = {}
State._lock = threading.Lock()
SyncState = State
AsyncState = State


class StatePlugin:
    """Injects `State` subclasses into the parameters annotated with them."""

    @staticmethod
    def applies_to(task_func: Any) -> bool:
        """Only tasks with `State` parameters (see `PluginHost.wants_for`)."""
        return bool(task_func.states)

    @hookimpl
    def task_executor_args_replace(self, task_executor: Any, kw: dict[str, Any]) -> Any:
        states = task_executor.task_func.states
        if not states:
            return None
        missing = {name: cls() for name, cls in states.items() if name not in kw}
        return {"kw": {**kw, **missing}} if missing else None
