"""`python -m qtasks.timer module:timer` runs a timer as a service (until SIGINT/SIGTERM).

The target names a timer object, or an app whose module defines exactly one timer for it (so a
later `qtasks -A module:app timer` can call `main` with the app's path).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from qtasks.timers.base import BaseTimer


def load(target: str) -> Any:
    """Import `module:attribute` (or `module` alone) from the working directory."""
    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"{module_name!r} has no attribute {attribute!r}") from None


def find_timer(target: str) -> BaseTimer:
    obj = load(target)
    if isinstance(obj, BaseTimer):
        return obj
    module = sys.modules[target.partition(":")[0]]
    timers = [value for value in vars(module).values()
              if isinstance(value, BaseTimer) and (obj is module or value.app is obj)]
    if len(timers) != 1:
        raise SystemExit(f"{target}: expected a timer, or an app whose module defines exactly "
                         f"one timer for it; found {len(timers)}")
    return timers[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qtasks.timer",
                                     description="Run a qtasks timer until SIGINT/SIGTERM.")
    parser.add_argument("target", help="module:timer (or module:app with one timer)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s [%(name)s: %(levelname)s] %(message)s")
    find_timer(args.target).run_forever()
    return 0
