"""`qtasks -A module:app web` (entry point group `qtasks.commands`) and the `qtasks-webview`
console script (`--redis-url`/`--name`, no app module at all).

`-A` loads the module the user named, as every `qtasks` command does, only to read the app's
name and where its Redis data lives; the dashboard then runs its own producer-only app, so no
task of the user's app runs and no worker starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any
from urllib.parse import urlsplit

from qtasks._discovery import redact_url
from qtasks.webview.settings import (
    PASSWORD_ENV,
    REDIS_URL_ENV,
    TOKEN_ENV,
    Auth,
    InsecureBindError,
    Settings,
    Target,
    read_secret,
)

EXIT_USAGE = 2
EXIT_APP = 3
EXIT_BROKER = 4


class WebviewError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any other needs auth)",
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"file whose first line is the access token (or ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--user",
        metavar="NAME",
        help=f"basic-auth user; the password comes from ${PASSWORD_ENV} or --password-file",
    )
    parser.add_argument(
        "--password-file", metavar="PATH", help="file whose first line is the basic-auth password"
    )
    parser.add_argument(
        "--read-only", action="store_true", help="no actions (cancel, retry, purge)"
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often open pages refresh (default 2)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="extra Host name accepted without auth (a local proxy)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


def settings_from(args: argparse.Namespace) -> Settings:
    try:
        token = read_secret(args.token_file, TOKEN_ENV)
        password = None
        if args.user or args.password_file:
            password = read_secret(args.password_file, PASSWORD_ENV)
            if password is None:
                raise ValueError(f"--user needs a password: set ${PASSWORD_ENV} or --password-file")
        auth = Auth(
            token=token, username=args.user if password is not None else None, password=password
        )
        if args.poll <= 0:
            raise ValueError("--poll must be positive")
        settings = Settings(
            host=args.host,
            port=args.port,
            auth=auth,
            read_only=args.read_only,
            poll_interval=args.poll,
            allowed_hosts=tuple(args.allow_host),
        )
        settings.check_bind()
    except (OSError, ValueError) as exc:  # InsecureBindError is a ValueError
        code = EXIT_USAGE
        raise WebviewError(str(exc), code) from None
    return settings


def target_from_app(app: Any) -> Target:
    """Name, Redis URL, key prefix and GlobalConfig name of a loaded app (either flavour)."""
    broker = app.broker
    url = getattr(broker, "url", None)
    keys = getattr(broker, "keys", None)
    if keys is not None and not url:
        raise WebviewError(
            f"app {app.name!r} was given its Redis client (redis_connect=), not a URL: start "
            "qtasks-webview --redis-url ... --name instead",
            EXIT_APP,
        )
    if not url or keys is None or not str(url).startswith(("redis", "unix")):
        raise WebviewError(
            f"app {app.name!r} does not use the Redis broker ({type(broker).__name__}); "
            "the web view reads Redis (pip install qtasks-redis)",
            EXIT_APP,
        )
    registry = getattr(broker.storage, "global_config", None)
    config_name = getattr(registry, "config_name", None)
    return Target(
        name=app.name,
        url=str(url),
        prefix=getattr(keys, "prefix", None),
        config_name=config_name if config_name != "GlobalConfig" else None,
    )


def check_redis(target: Target) -> None:
    """Fail at start, with the URL masked, rather than serve pages that all say 503."""
    import redis

    try:
        client = redis.Redis.from_url(target.url, socket_timeout=3, socket_connect_timeout=3)
    except ValueError as exc:  # redis-py's own check: a bad port or scheme, ...
        detail, secret = str(exc), urlsplit(target.url).password
        if secret and secret in detail:  # its detail may quote the URL
            detail = "refused by redis-py"
        raise WebviewError(
            f"not a usable Redis URL: {redact_url(target.url)} ({detail})", EXIT_USAGE
        ) from None
    try:
        client.ping()
    except redis.RedisError as exc:
        raise WebviewError(
            f"cannot reach Redis at {redact_url(target.url)}: {type(exc).__name__}", EXIT_BROKER
        ) from None
    finally:
        client.close()


def _run(target: Target, settings: Settings, log_level: str) -> int:
    from qtasks.webview.server import serve

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s [%(name)s: %(levelname)s] %(message)s"
    )
    check_redis(target)
    serve(target, settings, log_level=log_level)
    return 0


def run_command(args: argparse.Namespace) -> int:
    """`qtasks -A module:app web ...`"""
    from qtasks.cli.appload import load_app
    from qtasks.cli.errors import CliError

    try:
        settings = settings_from(args)
        target = target_from_app(load_app(args.app))
        return _run(target, settings, args.log_level)
    except WebviewError as exc:
        raise CliError(str(exc), exc.code) from None


def register(sub: Any) -> None:
    """The `qtasks web` subcommand."""
    command = sub.add_parser("web", help="serve the web dashboard (qtasks-webview)")
    add_server_options(command)
    command.set_defaults(handler=run_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qtasks-webview",
        description="A web dashboard for a QueueTasks app, read straight from its Redis.",
        epilog=f"Secrets never go on the command line: the Redis URL may come from "
        f"${REDIS_URL_ENV}, the token from ${TOKEN_ENV} or --token-file, the password "
        f"from ${PASSWORD_ENV} or --password-file. Exit codes: 2 usage (including "
        "a public --host without auth), 4 Redis unreachable.",
    )
    parser.add_argument(
        "--redis-url", metavar="URL", help=f"the app's Redis (default ${REDIS_URL_ENV})"
    )
    parser.add_argument("--name", default="QueueTasks", help="the app's name (key prefix)")
    parser.add_argument("--prefix", help="key prefix, when the app sets one apart from its name")
    parser.add_argument("--config-name", help="GlobalConfig name, when not the default")
    add_server_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    url = args.redis_url or os.environ.get(REDIS_URL_ENV)
    try:
        if not url:
            raise WebviewError(f"give --redis-url or set ${REDIS_URL_ENV}", EXIT_USAGE)
        settings = settings_from(args)
        target = Target(name=args.name, url=url, prefix=args.prefix, config_name=args.config_name)
        return _run(target, settings, args.log_level)
    except WebviewError as exc:
        print(f"qtasks-webview: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


__all__ = ["InsecureBindError", "main", "register"]
