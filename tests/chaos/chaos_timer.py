"""A timer replica for D4 (cron-dedupe): `python chaos_timer.py`.

Environment: QTASKS_BROKER_URL, CHAOS_FLAVOUR (sync or async timer), CHAOS_LEDGER. Writes
`ready` once it runs and `tick <task id> <fire time> ...` for every tick it enqueued, to the same
append-only ledger as the workers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from chaos_app import note

from qtasks import QueueTasks
from qtasks.plugins import BasePlugin
from qtasks.timer import AsyncTimer, SyncTimer


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CHAOS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = QueueTasks(name=os.environ.get("CHAOS_NAME", "tq"))

    @app.task(name="tick")
    def tick() -> None:
        return None

    def enqueued(task: Any, run_time: Any, **_: Any) -> None:
        note("tick", str(task.uuid), run_time.isoformat(), "-")

    def started() -> None:
        note("ready", "-", "-", "-")
        # What the suite's fixtures wait for before they signal a process (as for workers).
        logging.getLogger("chaos.timer").info("timer consuming")

    ledger = BasePlugin("chaos-timer-ledger")
    ledger.handlers = {
        "timer_start": lambda **_: started(),
        "timer_add_task_after": enqueued,
    }
    app.add_plugin(ledger, component="timer")
    timer_cls = AsyncTimer if os.environ.get("CHAOS_FLAVOUR") == "async" else SyncTimer
    timer = timer_cls(app)
    timer.add_task("tick", trigger=CronTrigger(second="*", timezone="UTC"))
    timer.run_forever()


if __name__ == "__main__":
    main()
