"""Running a timer as a service: `qtasks -A module:app timer` or `python -m qtasks.timer TARGET`.

`TARGET` names a timer (`module:timer`), or an app whose module defines exactly one timer for
it (`module:app`); `qtasks -A module:app timer` looks up the app's timer the same way, or takes
`--timer module:timer`. The timer runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from types import ModuleType
from typing import Any

from qtasks.timers.base import BaseTimer


class TimerNotFoundError(LookupError):
    """The target names no timer (nor an app with exactly one timer in its module)."""


def _import(target: str) -> tuple[ModuleType, Any]:
    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is "not loaded"
        raise TimerNotFoundError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in filter(None, attribute.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TimerNotFoundError(
                f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return module, obj


def timer_of(module: ModuleType, app: Any) -> BaseTimer:
    """The one timer `module` defines for `app` (any timer when `app` is the module)."""
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, BaseTimer) and (app is module or value.app is app)
    ]
    if len(found) != 1:
        raise TimerNotFoundError(
            f"expected exactly one timer for the app in module {module.__name__!r}, found "
            f"{len(found)}; name it as module:timer"
        )
    return found[0]


def find_timer(target: str) -> BaseTimer:
    module, obj = _import(target)
    return obj if isinstance(obj, BaseTimer) else timer_of(module, obj)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s [%(name)s: %(levelname)s] %(message)s"
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m qtasks.timer module:timer`."""
    parser = argparse.ArgumentParser(
        prog="python -m qtasks.timer", description="Run a qtasks timer until SIGINT/SIGTERM."
    )
    parser.add_argument("target", help="module:timer, or module:app with one timer")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    _logging(args.log_level)
    try:
        timer = find_timer(args.target)
    except TimerNotFoundError as exc:
        parser.exit(3, f"python -m qtasks.timer: error: {exc}\n")
    timer.run_forever()
    return 0


def register(sub: Any) -> None:
    """The `qtasks timer` subcommand (entry point group `qtasks.commands`)."""
    command = sub.add_parser("timer", help="run the app's timer (until SIGINT/SIGTERM)")
    command.add_argument(
        "--timer",
        metavar="MODULE:TIMER",
        help="the timer, when the app's module does not define exactly one",
    )
    command.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    command.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from qtasks.cli.appload import load_app
    from qtasks.cli.errors import EXIT_APP, CliError

    _logging(args.log_level)
    try:
        if args.timer:
            timer = find_timer(args.timer)
        else:
            app = load_app(args.app)
            timer = timer_of(sys.modules[args.app.partition(":")[0]], app)
    except TimerNotFoundError as exc:
        raise CliError(str(exc), EXIT_APP) from None
    timer.run_forever()
    return 0
