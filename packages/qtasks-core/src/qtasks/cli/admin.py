"""`stats`, `dead`, `purge`: what an operator looks at and cleans up."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from qtasks.cli.appload import call, load_app
from qtasks.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError
from qtasks.cli.render import Progress, dump_json, table

DEAD_PAGE = 1000


def live_stats(app: Any) -> dict[str, Any]:
    broker = call(app.broker.stats)
    statuses = call(app.broker.storage.counts)
    registry = app.broker.storage.global_config
    workers = call(registry.get_all, "workers") if registry is not None else {}
    now = time.time()
    return {
        "app": app.name,
        "queues": broker["queues"],
        "processing": broker["processing"],
        "dead": broker["dead"],
        "statuses": statuses,
        "throughput_last_minute": broker["finished_last_minute"],
        "workers": [
            {**info, "heartbeat_age": round(now - float(info.get("heartbeat", now)), 3)}
            for info in workers.values()
        ],
    }


def print_stats(data: dict[str, Any]) -> None:
    print(
        f"app {data['app']}: {data['processing']} running, {data['dead']} dead, "
        f"{data['throughput_last_minute']} finished in the last minute"
    )
    rows = []
    for queue, info in sorted(data["queues"].items()):
        prios = ", ".join(
            f"p{p}: {n}" for p, n in sorted(info["priorities"].items(), key=lambda kv: int(kv[0]))
        )
        rows.append((queue, info["ready"], info["delayed"], prios or "-"))
    print()
    table(("queue", "ready", "delayed", "by priority"), rows)
    print()
    table(("status", "tasks"), sorted(data["statuses"].items()))
    print()
    table(
        ("worker", "host", "pid", "heartbeat age (s)", "in flight", "processed"),
        [
            (
                w["id"],
                w.get("host"),
                w.get("pid"),
                w["heartbeat_age"],
                w.get("in_flight"),
                w.get("processed"),
            )
            for w in data["workers"]
        ],
    )


def cmd_stats(args: argparse.Namespace) -> int:
    if args.inspect and not args.target:  # it showed the live figures instead
        raise CliError("inspect targets: app | tasks [NAME...] | task NAME", EXIT_USAGE)
    app = load_app(args.app)
    if args.target:
        return inspect(app, args.target)
    while True:
        data = live_stats(app)
        if args.watch is not None and sys.stdout.isatty():
            print("\033[2J\033[H", end="")
        if args.json:
            dump_json(data)
        else:
            print_stats(data)
        if args.watch is None:
            return EXIT_OK
        time.sleep(args.watch)


def inspect(app: Any, target: list[str]) -> int:
    from qtasks.stats import AsyncStats, SyncStats

    kind, *rest = target
    options = {
        k: v.lower() in ("1", "true", "yes")
        for k, _, v in (item.partition("=") for item in rest if "=" in item)
    }
    names = [item for item in rest if "=" not in item]
    stats = (AsyncStats if app.is_async else SyncStats)(app)
    report = call(stats.inspect)
    as_json = options.get("json", False)
    if kind == "app":
        print(report.app(json=as_json))
    elif kind == "tasks":
        print(report.tasks(*names, json=as_json))
    elif kind == "task" and names:
        if names[0] not in app.tasks:
            raise CliError(f"no task named {names[0]!r}")
        print(report.task(names[0], json=as_json))
    else:
        raise CliError("inspect targets: app | tasks [NAME...] | task NAME", EXIT_USAGE)
    return EXIT_OK


def confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise CliError(f"{question}: refusing without --yes (no terminal to ask)", EXIT_USAGE)
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_dead(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    if args.action == "list":
        entries = call(app.broker.list_dead, args.limit)
        if args.json:
            dump_json(
                [
                    vars(e)
                    if not hasattr(e, "__slots__")
                    else {s: getattr(e, s) for s in e.__slots__}
                    for e in entries
                ]
            )
        else:
            table(
                ("uuid", "task", "reason", "at", "sample"),
                [
                    (
                        e.uuid,
                        e.task_name,
                        e.reason,
                        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at)),
                        e.sample[:60],
                    )
                    for e in entries
                ],
            )
        return EXIT_OK
    if args.action == "retry":
        uuids = args.uuids or _every_dead_id(app)
        progress = Progress("retried", len(uuids))
        failed = 0
        for uuid in uuids:
            ok = call(app.broker.retry_dead, uuid)
            failed += not ok
            progress.step()
        progress.finish()
        return EXIT_OK if not failed else EXIT_FAILED
    # purge
    what = ", ".join(args.uuids) if args.uuids else "every dead letter"
    if not confirm(f"purge {what} of app {app.name!r}", args.yes):
        return EXIT_FAILED
    if args.uuids:
        progress = Progress("purged", len(args.uuids))
        for uuid in args.uuids:
            progress.step(call(app.broker.purge_dead, uuid))
        progress.finish()
    else:
        print(f"purged {call(app.broker.purge_dead, None)} dead letters", file=sys.stderr)
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    if not confirm(
        f"purge every queued task of queue {args.queue!r} of app {app.name!r}", args.yes
    ):
        return EXIT_FAILED
    count = call(app.broker.purge_queue, args.queue)
    print(f"purged {count} queued tasks from {args.queue!r}", file=sys.stderr)
    return EXIT_OK


def register(sub: Any) -> None:
    stats = sub.add_parser("stats", help="live figures, or `stats inspect app|tasks|task NAME`")
    stats.add_argument("--json", action="store_true")
    stats.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2)",
    )
    stats.add_argument("inspect", nargs="?", choices=["inspect"], help=argparse.SUPPRESS)
    stats.add_argument("target", nargs="*", help="app | tasks [NAME...] | task NAME [json=true]")
    stats.set_defaults(handler=cmd_stats)

    dead = sub.add_parser("dead", help="the dead-letter set: list, retry, purge")
    dead.add_argument("action", choices=["list", "retry", "purge"])
    dead.add_argument("uuids", nargs="*", help="ids (default: all)")
    dead.add_argument("--limit", type=int, default=100)
    dead.add_argument("--json", action="store_true")
    dead.add_argument("-y", "--yes", action="store_true", help="do not ask")
    dead.set_defaults(handler=cmd_dead)

    purge = sub.add_parser("purge", help="remove every queued task of a queue")
    purge.add_argument("--queue", default="default")
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask")
    purge.set_defaults(handler=cmd_purge)


__all__ = ["EXIT_FAILED", "register"]


def _every_dead_id(app: Any) -> list[str]:
    """Every dead letter's id now, page by page (a set larger than one page, up to the broker's
    `dead_letter_limit`, is retried whole): the ids first, since retrying takes them out."""
    ids: list[str] = []
    while True:
        page = call(app.broker.list_dead, DEAD_PAGE, len(ids))
        ids += [entry.uuid for entry in page]
        if len(page) < DEAD_PAGE:
            return ids
