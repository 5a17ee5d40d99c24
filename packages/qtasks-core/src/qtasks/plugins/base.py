"""`BasePlugin`: the 1.7-style plugin, a `handlers` dict from trigger names to callables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BasePlugin:
    """A plugin registered with `app.add_plugin(plugin, trigger_names=[...], component=...)`.

    Put handlers in `self.handlers` (`{"task_executor_args_replace": self.replace}`); each is
    called with the trigger's arguments as keyword arguments and may return a dict of
    replacements (see `qtasks.hookspecs`). Or override `trigger(name, **kwargs)` to receive every
    trigger of the component. `start()` and `stop()` run with the app; on the asyncio app they may
    be coroutines.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__
        self.handlers: dict[str, Callable[..., Any]] = {}

    def trigger(self, name: str, /, **kwargs: Any) -> Any:
        handler = self.handlers.get(name)
        return None if handler is None else handler(**kwargs)

    def start(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def stop(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"
