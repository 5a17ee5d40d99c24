"""The parser and the dispatch; subcommands of plugins come from entry points."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from qtasks import _discovery
from qtasks.cli import admin, meta, tasks
from qtasks.cli.appload import unreachable
from qtasks.cli.errors import EXIT_BROKER, EXIT_INTERRUPTED, EXIT_USAGE, CliError
from qtasks.exc import (
    BrokerError,
    ConfigError,
    PayloadTooLargeError,
    SerializationError,
    TaskArgumentsError,
    TaskOptionError,
    UnknownTaskError,
)

# What the apps raise for a command's own input, before anything is written.
INPUT_ERRORS = (
    UnknownTaskError,
    TaskArgumentsError,
    TaskOptionError,
    SerializationError,
    PayloadTooLargeError,
)

COMMANDS_GROUP = "qtasks.commands"
log = logging.getLogger("qtasks.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qtasks",
        description="QueueTasks: run workers and operate queues.",
        epilog="exit codes: 0 ok, 1 failed, 2 usage, 3 app not loadable, 4 broker "
        "unreachable, 5 --wait timed out, 130 interrupted",
    )
    parser.add_argument(
        "-A",
        "--app",
        "-app",
        dest="app",
        metavar="MODULE:APP",
        help="the app, as module:attribute (a factory is called)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (tasks, admin, meta):
        module.register(sub)
    for ep in _discovery.entry_points(COMMANDS_GROUP):
        try:
            ep.load()(sub)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            log.warning("command plugin %r failed to load: %s", ep.name, exc)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    handler: Any = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(handler(args))
    except CliError as exc:
        print(f"qtasks: error: {exc}", file=sys.stderr)
        return exc.code
    except (BrokerError, ConnectionError, TimeoutError) as exc:
        print(f"qtasks: error: {unreachable(exc)}", file=sys.stderr)
        return EXIT_BROKER
    except (ConfigError, *INPUT_ERRORS) as exc:  # a setting or an argument refused: one line
        print(f"qtasks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
