"""Lifecycle and task events: `@app.events.on.task_success()` callbacks.

Events are plain callbacks for application code (plugins use triggers). Fired: `starting`,
`stopping`, `worker_running`, `worker_stopping`, `task_running`, `task_stopping`, `task_success`,
`task_error`, `task_cancel`. A callback may be sync or async; async ones need the asyncio app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtasks._drive import Flow

EVENT_NAMES = (
    "starting",
    "stopping",
    "worker_running",
    "worker_stopping",
    "task_running",
    "task_stopping",
    "task_success",
    "task_error",
    "task_cancel",
)
log = logging.getLogger("qtasks.events")
Callback = Callable[..., Any]


class OnEvents:
    """`events.on.<name>()` returns a decorator that registers a callback (note the `()`)."""

    def __init__(self, events: Events) -> None:
        self._events = events

    def __getattr__(self, name: str) -> Callable[[], Callable[[Callback], Callback]]:
        if name not in EVENT_NAMES:
            raise AttributeError(f"unknown event {name!r}; events are {', '.join(EVENT_NAMES)}")

        def factory() -> Callable[[Callback], Callback]:
            def register(func: Callback) -> Callback:
                self._events.callbacks.setdefault(name, []).append(func)
                return func

            return register

        return factory


class Events:
    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callback]] = {}
        self.on = OnEvents(self)

    def wants(self, name: str) -> bool:
        return name in self.callbacks

    def flow(self, name: str, **kwargs: Any) -> Flow[None]:
        """Call the callbacks of `name`; one that raises is logged and the rest still run."""
        for callback in self.callbacks.get(name, ()):
            try:
                yield lambda cb=callback: cb(**kwargs)  # type: ignore[misc]
            except Exception:
                log.exception("event callback %r for %r raised", callback, name)


SyncEvents = Events
AsyncEvents = Events
