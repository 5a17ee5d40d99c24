"""`run`, `add`, `status`, `cancel`, `retry`: working with one app's tasks."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from qtasks.cli.appload import broker_url, call, load_app
from qtasks.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, CliError
from qtasks.cli.render import dump_json, task_dict

LOG_FORMATS = {
    "text": "%(asctime)s %(levelname)s %(name)s: %(message)s",
    "json": '{"time": "%(asctime)s", "level": "%(levelname)s", "logger": "%(name)s", '
    '"message": "%(message)s"}',
}


def value(token: str) -> Any:
    """A shell token as a task argument: JSON when it parses (`3`, `true`, `[1]`), else text."""
    try:
        return json.loads(token)
    except ValueError:
        return token


def keyword(token: str) -> tuple[str, Any]:
    key, sep, raw = token.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected key=value, got {token!r}")
    return key, value(raw)


def banner(app: Any, num_workers: int) -> str:
    from qtasks.cli.meta import installed_distributions

    plugins = ", ".join(f"{d}=={v}" for d, v, _ in installed_distributions()) or "none"
    lines = [
        f"qtasks {app.version}  app {app.name!r} ({'asyncio' if app.is_async else 'sync'})",
        f"  broker   {type(app.broker).__name__} at {broker_url(app)}",
        f"  storage  {type(app.broker.storage).__name__}",
        f"  config   {type(app.broker.storage.global_config).__name__}",
        f"  worker   {type(app.worker).__name__}: concurrency {app.config.max_tasks_process}, "
        f"prefetch {app.config.prefetch}, loops {num_workers}, "
        f"queues {', '.join(app.worker.queues)}",
        f"  tasks    {', '.join(sorted(app.tasks)) or 'none'}",
        f"  installed {plugins}",
    ]
    return "\n".join(lines)


def _at_least_one(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMATS[args.log_format])
    app = load_app(args.app)
    if args.concurrency is not None:
        app.config.max_tasks_process = args.concurrency
    if args.queues:
        app.worker.queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    print(banner(app, args.loops), file=sys.stderr, flush=True)
    app.run_forever(num_workers=args.loops)
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    kwargs = dict(args.kw or [])
    options: dict[str, Any] = {"priority": args.priority, "timeout": args.wait}
    if args.queue:
        options["queue"] = args.queue
    if args.delay is not None:
        options["delay"] = args.delay
    task = call(app.enqueue, args.task, tuple(value(a) for a in args.args), kwargs, **options)
    if args.wait is None:
        print(task.uuid if not args.json else json.dumps(task_dict(task), default=str))
        return EXIT_OK
    if task is None:
        raise CliError(f"no result within {args.wait}s", EXIT_TIMEOUT)
    return show(task, args.json)


def show(task: Any, as_json: bool) -> int:
    if as_json:
        dump_json(task_dict(task))
    else:
        print(f"{task.uuid}  {task.task_name}  {task.status}")
        if task.status == "success":
            print(json.dumps(task.returning, default=str))
        elif task.traceback:
            print(task.traceback.rstrip(), file=sys.stderr)
        elif task.cancel_reason:
            print(f"cancelled: {task.cancel_reason}")
    return EXIT_OK if task.status in ("success", "new", "process") else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    task = call(app.get, args.uuid)
    if task is None:
        raise CliError(f"no task {args.uuid}")
    return show(task, args.json)


def cmd_cancel(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    outcome = call(app.cancel, args.uuid, args.reason)
    print(f"{args.uuid}: {outcome}")
    return EXIT_OK if outcome in ("cancelled", "signalled") else EXIT_FAILED


def cmd_retry(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    task = call(app.retry, args.uuid)
    if task is None:
        raise CliError(f"nothing to retry: {args.uuid} is not failed, cancelled or dead")
    print(task.uuid)
    return EXIT_OK


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run a worker (SIGTERM drains, a second stops at once)")
    run.add_argument("-c", "--concurrency", type=int, help="tasks run at once (max_tasks_process)")
    run.add_argument(
        "-l", "--loops", type=_at_least_one, default=1, help="claim loops (num_workers)"
    )
    run.add_argument("-Q", "--queues", help="comma-separated queues to consume")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="text", choices=sorted(LOG_FORMATS))
    run.set_defaults(handler=cmd_run)

    add = sub.add_parser("add", help="enqueue a task; --wait prints its result")
    add.add_argument("task")
    add.add_argument("args", nargs="*", help="positional arguments (JSON or text)")
    add.add_argument("--kw", action="append", type=keyword, metavar="KEY=VALUE")
    add.add_argument("--priority", type=int)
    add.add_argument("--queue")
    add.add_argument("--delay", type=float, help="seconds before it may start")
    add.add_argument("--wait", type=float, metavar="SECONDS", help="wait for the final record")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=cmd_add)

    status = sub.add_parser("status", help="show a task's record")
    status.add_argument("uuid")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    cancel = sub.add_parser("cancel", help="cancel a queued or running task")
    cancel.add_argument("uuid")
    cancel.add_argument("--reason")
    cancel.set_defaults(handler=cmd_cancel)

    retry = sub.add_parser("retry", help="run a failed, cancelled or dead task again")
    retry.add_argument("uuid")
    retry.set_defaults(handler=cmd_retry)
