"""The worker app of the chaos suite, run as `python -m qtasks -A chaos_app:build run`.

Everything comes from the environment, so that nothing secret is on the command line (E4 reads
`/proc/<pid>/cmdline`) and the suite can start many differently configured workers:

    QTASKS_BROKER_URL  the Redis URL (read by the app, as any qtasks app does)
    QTASKS_*           config overrides (lease, heartbeat, reaper, concurrency, grace...)
    CHAOS_FLAVOUR      "sync" (SyncThreadWorker) or "async" (AsyncWorker)
    CHAOS_NAME         app name, hence key prefix (default "tq", the prefix the ACL test grants)
    CHAOS_LEDGER       the append-only execution ledger (outside Redis)
    TQ_CRASH_AT        after_claim | after_exec | after_ack: os._exit(137) at that point ...
    TQ_CRASH_KEY       ... for the task whose first argument is this key, once (a marker file
                       next to the ledger), so a respawned worker with the same env runs it.
                       Several points: TQ_CRASH_AT="after_claim:k1,after_exec:k2".

The crash points and the ledger are plugins on the worker's own triggers: the product code has
no test hooks. Ledger lines are `event task_id key token pid wall_time detail`, one `os.write`
on an O_APPEND descriptor each, so lines from many processes never interleave and a Redis fault
cannot touch the evidence:

    claim  a claimed task entered the worker (`worker_add`)
    start  its function is about to run (`task_executor_before_execute`)
    end    it returned or raised; detail = the status about to be written
    ack    its final record was written under this lease (`worker_execute_after`)
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from qtasks.plugins import BasePlugin

LEDGER = os.environ.get("CHAOS_LEDGER", "")
CRASH_EXIT = 137


def crash_points() -> dict[str, str]:
    """{point: key ("" for any key)} from TQ_CRASH_AT and TQ_CRASH_KEY."""
    default_key = os.environ.get("TQ_CRASH_KEY", "")
    points = {}
    for item in os.environ.get("TQ_CRASH_AT", "").split(","):
        point, _, key = item.strip().partition(":")
        if point:
            points[point] = key or default_key
    return points


CRASH = crash_points()


class Boom(RuntimeError):
    """An exception whose message cannot even be rendered (C5)."""

    def __str__(self) -> str:
        raise ValueError("__str__ of this exception raises")


def note(event: str, task_id: str, key: str, token: str, detail: str = "-") -> None:
    if not LEDGER:
        return
    stamp = f"{os.getpid()} {time.time():.6f}"
    line = f"{event} {task_id} {key or '-'} {token or '-'} {stamp} {detail}\n"
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def key_of(args: Any) -> str:
    first = args[0] if args else None
    # Keys are short words; anything else (a 900 KiB argument) is not written to the ledger.
    ok = isinstance(first, str) and 0 < len(first) <= 64 and " " not in first
    return first if ok else "-"


def maybe_crash(point: str, key: str) -> None:
    """Exit like a SIGKILL (no cleanup, no finally) at `point`, once per key."""
    wanted = CRASH.get(point)
    if wanted is None or (wanted and key != wanted):
        return
    marker = f"{LEDGER}.crashed.{point}.{key}"
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return  # already crashed here once: this is the run after the recovery
    os._exit(CRASH_EXIT)


def token_of(worker: Any, task_id: str) -> str:
    return str(worker.in_flight().get(task_id, "-"))


class LedgerPlugin(BasePlugin):
    """Writes the ledger and crashes on cue; registered for the worker's triggers."""

    def __init__(self) -> None:
        super().__init__("chaos-ledger")
        self.handlers = {
            "worker_add": self.on_claim,
            "task_executor_before_execute": self.on_start,
            "worker_remove_finished_task": self.on_end,
            "worker_execute_after": self.on_ack,
        }

    def on_claim(self, worker: Any, uuid: str, args: Any, **_: Any) -> None:
        key = key_of(args)
        note("claim", uuid, key, token_of(worker, uuid))
        maybe_crash("after_claim", key)

    def on_start(self, task_executor: Any) -> None:
        env = task_executor.task_broker
        note("start", env.id, key_of(env.args), token_of(task_executor.worker, env.id))

    def on_end(self, worker: Any, task_broker: Any, model: Any, **_: Any) -> None:
        key = key_of(task_broker.args)
        note("end", task_broker.id, key, token_of(worker, task_broker.id), model.status)
        maybe_crash("after_exec", key)

    def on_ack(self, worker: Any, task_broker: Any, model: Any, **_: Any) -> None:
        key = key_of(task_broker.args)
        note("ack", task_broker.id, key, token_of(worker, task_broker.id), model.status)
        maybe_crash("after_ack", key)


def _dump_asyncio_tasks(signum: int, frame: Any) -> None:
    """SIGUSR2: every asyncio task's stack to stderr (the worker's log). faulthandler shows
    the threads only, and a hung asyncio drain is one thread idle in `select`."""
    import sys

    loop = asyncio.events._get_running_loop()
    if loop is None:
        return
    for task in asyncio.all_tasks(loop):
        print(f"--- asyncio task {task.get_name()}: {task!r:.300}", file=sys.stderr)
        task.print_stack(limit=30, file=sys.stderr)
    sys.stderr.flush()


signal.signal(signal.SIGUSR2, _dump_asyncio_tasks)


def build() -> Any:
    """The app (a factory, so `-A chaos_app:build` reads the environment at start)."""
    flavour = os.environ.get("CHAOS_FLAVOUR", "sync")
    name = os.environ.get("CHAOS_NAME", "tq")
    if flavour == "async":
        from qtasks.asyncio import QueueTasks as AsyncApp

        app: Any = AsyncApp(name=name)
    else:
        from qtasks import QueueTasks

        app = QueueTasks(name=name)
    app.add_plugin(LedgerPlugin(), component="worker")
    if flavour == "async":
        register_async(app)
    else:
        register_sync(app)
    return app


def register_sync(app: Any) -> None:
    @app.task(name="work")
    def work(key: str, seconds: float = 0.0) -> str:
        if seconds:
            time.sleep(seconds)
        return key

    @app.task(name="slow", max_time=0.3)
    def slow(key: str, seconds: float = 2.0) -> str:
        time.sleep(seconds)  # a blocking call Python cannot interrupt
        return key

    @app.task(name="flaky", retry=3, retry_backoff=0.05, retry_on_exc=(ValueError,))
    def flaky(key: str, kind: str = "value") -> None:
        raise_kind(kind)

    @app.task(name="suicide")
    def suicide(key: str) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def register_async(app: Any) -> None:
    @app.task(name="work")
    async def work(key: str, seconds: float = 0.0) -> str:
        if seconds:
            await asyncio.sleep(seconds)
        return key

    @app.task(name="slow", max_time=0.3)
    async def slow(key: str, seconds: float = 2.0) -> str:
        await asyncio.sleep(seconds)
        return key

    @app.task(name="flaky", retry=3, retry_backoff=0.05, retry_on_exc=(ValueError,))
    async def flaky(key: str, kind: str = "value") -> None:
        raise_kind(kind)

    @app.task(name="suicide")
    async def suicide(key: str) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def raise_kind(kind: str) -> None:
    if kind == "value":
        raise ValueError("flaky failed as planned")
    if kind == "type":
        raise TypeError("not retryable by this task")
    raise Boom()
