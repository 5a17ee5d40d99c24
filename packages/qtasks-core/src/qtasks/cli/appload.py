"""Loading the app named by `-A module:attr` (the current directory is importable)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from qtasks._discovery import redact_url
from qtasks.apps.base import BaseQueueTasks
from qtasks.cli.errors import EXIT_APP, EXIT_BROKER, CliError
from qtasks.exc import BrokerError

loaded: list[BaseQueueTasks] = []
"""Apps loaded by this command, so errors can name the broker (its URL masked)."""


def load_app(path: str | None) -> Any:
    """The app object (either flavour; typed `Any` because their methods differ in
    awaitability, and `call` handles both)."""
    if not path:
        raise CliError("no app given: use -A module:app (or --app)", EXIT_APP)
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is "not loaded"
        raise CliError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}", EXIT_APP
        ) from None
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise CliError(f"module {module_name!r} has no attribute {attr!r}", EXIT_APP) from None
    if callable(obj) and not isinstance(obj, BaseQueueTasks):
        obj = obj()  # a factory, as 1.7 accepted
    if not isinstance(obj, BaseQueueTasks):
        raise CliError(f"{path} is a {type(obj).__name__}, not a QueueTasks app", EXIT_APP)
    loaded.append(obj)
    return obj


def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a method of either app flavour and return its value."""
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def broker_url(app: BaseQueueTasks) -> str:
    return redact_url(getattr(app.broker, "url", None) or "memory://")


def unreachable(exc: BaseException) -> CliError:
    """One line naming the broker (password masked) and the error's kind."""
    where = f" at {broker_url(loaded[-1])}" if loaded else ""
    detail = str(exc).split("\n", 1)[0] if isinstance(exc, BrokerError) else type(exc).__name__
    return CliError(f"cannot reach the broker{where}: {detail}", EXIT_BROKER)
