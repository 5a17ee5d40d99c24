"""qtasks-timer: cron schedules for QueueTasks, once per tick however many timers run.

```python
from apscheduler.triggers.cron import CronTrigger
from qtasks.timer import AsyncTimer  # also: from qtasks.timers import AsyncTimer

timer = AsyncTimer(app=app)
timer.add_task("report", trigger=CronTrigger(minute="*/5"))
timer.run_forever()
```
"""

from __future__ import annotations

from qtasks.timer.async_timer import AsyncTimer
from qtasks.timer.errors import DuplicateScheduleError, InvalidTriggerError, TimerError
from qtasks.timer.misfire import CatchUp, plan_catch_up
from qtasks.timer.schedule import DEFAULT_MISFIRE_GRACE_TIME, SCHEDULES, Schedule
from qtasks.timer.status import ScheduleStatus
from qtasks.timer.sync_timer import SyncTimer

__all__ = [
    "DEFAULT_MISFIRE_GRACE_TIME",
    "SCHEDULES",
    "AsyncTimer",
    "CatchUp",
    "DuplicateScheduleError",
    "InvalidTriggerError",
    "Schedule",
    "ScheduleStatus",
    "SyncTimer",
    "TimerError",
    "plan_catch_up",
]
