"""Run inside a venv holding qtasks-core alone (never the checkout):

    python -I scripts/probe_core_only.py

Core must work by itself: the public API imports, no plugin leaf is importable, the facade
names a missing first-party plugin in its ImportError, only core's brokers are registered,
and a task runs end to end on the in-memory components. One line per check; exit 1 if any
failed.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points

CORE_BROKERS = {"SyncMemoryBroker", "AsyncMemoryBroker"}


def public_api_imports() -> str:
    from qtasks import QueueTasks

    return repr(QueueTasks)


def no_redis_leaf() -> str:
    assert importlib.util.find_spec("qtasks.redis") is None, "qtasks.redis is importable"
    return "find_spec('qtasks.redis') is None"


def facade_hints_install() -> str:
    try:
        from qtasks.brokers import AsyncRedisBroker  # noqa: F401
    except ImportError as exc:
        assert "qtasks-redis" in str(exc), f"no install hint in {exc!r}"
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("AsyncRedisBroker imported without qtasks-redis installed")


def only_core_brokers() -> str:
    names = {ep.name for ep in entry_points(group="qtasks.brokers")}
    assert names == CORE_BROKERS, f"qtasks.brokers entry points: {sorted(names)}"
    return ", ".join(sorted(names))


def runs_a_task_in_memory() -> str:
    from qtasks import QueueTasks

    app = QueueTasks()

    @app.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    with app:
        task = app.add_task("double", 21, timeout=5)
    assert task is not None and task.status == "success" and task.returning == 42, task
    return f"double(21) -> {task.returning}"


CHECKS: list[Callable[[], str]] = [
    public_api_imports,
    no_redis_leaf,
    facade_hints_install,
    only_core_brokers,
    runs_a_task_in_memory,
]


def main() -> int:
    failed = 0
    for check in CHECKS:
        try:
            print(f"ok   core-only: {check.__name__}: {check()}")
        except Exception:  # noqa: BLE001 - every check reports, then the exit code says
            failed += 1
            print(f"FAIL core-only: {check.__name__}:\n{traceback.format_exc()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
