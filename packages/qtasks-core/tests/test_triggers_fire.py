"""Every trigger of core's components actually fires (timer triggers: see qtasks-timer)."""

from __future__ import annotations

import threading
import time
from typing import Any

from qtasks import QueueTasks, hookspecs
from qtasks.plugins import BasePlugin
from qtasks.stats import SyncStats


class Recorder(BasePlugin):
    def __init__(self, fired: set[str]) -> None:
        super().__init__()
        self.fired = fired

    def trigger(self, name: str, **kwargs: Any) -> None:
        self.fired.add(name)


class Before:
    def __init__(self, executor: Any) -> None:
        self.executor = executor

    def __call__(self) -> None:
        return None


def test_every_core_trigger_fires() -> None:
    fired: set[str] = set()
    app = QueueTasks(name="fire-all", broker_url="memory://fire-all")
    for component in hookspecs.COMPONENTS:
        if component != "timer":
            app.add_plugin(Recorder(fired), component=component)
    app.config.lease_timeout = 0.2
    app.config.heartbeat_interval = 0.05
    app.config.running_older_tasks = True
    app.config.delete_finished_tasks = True
    app.config.enqueue_unknown_tasks = True
    app.add_middleware(Before)
    running = threading.Event()

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    @app.task(name="gen")
    def gen() -> Any:
        yield 1

    @app.task(name="fails", retry=1)
    def fails() -> None:
        raise ValueError("no")

    @app.task(name="plugin_error", echo=True)
    def plugin_error(self: Any) -> None:
        self.ctx.plugin_error(detail="x")

    @app.task(name="quits", echo=True)
    def quits(self: Any) -> None:
        self.ctx.cancel("bye")

    @app.task(name="holds")
    def holds() -> None:
        running.set()
        time.sleep(0.3)

    # A task whose worker "died": claimed, never finished; recovered at start.
    orphan = app.add_task("ok", 0)
    assert orphan is not None
    claimed = app.broker.claim("dead-worker", 1, 0.1, ["default"])
    assert [d.envelope.id for d in claimed] == [str(orphan.uuid)]
    deadline = time.monotonic() + 5
    while claimed and time.monotonic() < deadline:  # the lease lapses after 0.2 s
        lapsed = all(lease.deadline < time.time() for lease in app.broker.store.leases.values())
        if lapsed:
            break
        time.sleep(0.02)

    with app:
        for name, args in (
            ("ok", (1,)),
            ("gen", ()),
            ("fails", ()),
            ("plugin_error", ()),
            ("quits", ()),
            ("os.system", ("echo",)),
        ):
            assert app.add_task(name, *args, timeout=5) is not None, name
        assert app.wait(orphan.uuid, 5) is not None
        held = app.add_task("holds")
        assert held is not None
        assert running.wait(5)
        app.cancel(held.uuid)
        task = app.get(held.uuid)
        assert task is not None
        app.broker.update(name=str(task.uuid), mapping={"note": "x"})
        app.broker.storage.get_all()
        config = app.broker.storage.global_config
        config.set("settings", "k", "v")
        config.get("settings", "k")
        config.get_all("settings")
        config.get_match("*")
        app.ping()
        SyncStats(app).inspect()
        # A second lease lapse while running: the reaper (or heartbeat) returns it.
        app.wait(held.uuid, 5)
    app.flush_all()
    expected = {n for n, c in hookspecs.TRIGGER_COMPONENT.items() if c != "timer"}
    assert expected - fired == set()
