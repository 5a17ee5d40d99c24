"""What SyncTimer and AsyncTimer share: registration, tick claims, catch-up and records.

The logic is written once as flows (see `qtasks._drive`): generators that yield the app's calls
as steps. Each timer flavour only chooses how to drive them, and the driver follows the *app's*
flavour: a sync app's calls run in a thread, an asyncio app's are awaited.

Exactly once per tick: before enqueuing, a timer claims `(schedule id, tick)` with the app's
GlobalConfig `set_nx` (a Redis `SET NX` with a TTL on Redis). Every replica computes the same id
and the same tick key, so one claim succeeds per tick whatever the number of timers.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from functools import partial
from typing import Any

from qtasks._drive import Flow
from qtasks.exc import TaskOptionError, UnknownTaskError
from qtasks.schemas.envelope import encode
from qtasks.schemas.options import check_priority
from qtasks.timer.errors import DuplicateScheduleError
from qtasks.timer.executors import executor_only
from qtasks.timer.misfire import CatchUp, plan_catch_up
from qtasks.timer.schedule import (
    CATCH_UPS,
    DEFAULT_MISFIRE_GRACE_TIME,
    SCHEDULES,
    TICKS,
    Schedule,
)
from qtasks.timer.status import ScheduleStatus
from qtasks.timer.triggers import check_trigger, describe, epoch_us, first_fire, from_epoch
from qtasks.timers.base import BaseTimer

MAX_INSTANCES = 4
"""Ticks of one schedule in flight at once (a slow enqueue must not skip the next tick)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TimerCore(BaseTimer):
    """Shared by `SyncTimer` and `AsyncTimer`; not used directly."""

    def __init__(self, app: Any, log: logging.Logger | None = None, config: Any = None) -> None:
        super().__init__(app, log=log, config=config)
        self.log: logging.Logger = log or logging.getLogger(
            f"qtasks.timer.{getattr(app, 'name', 'QueueTasks')}"
        )
        self.timer_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        """Names this timer in claims and records (host:pid:random)."""
        self._schedules: dict[str, Schedule] = {}
        self._records: dict[str, dict[str, Any]] = {}
        """Records written by this timer: the store when the app has no GlobalConfig."""
        self._running = False
        self._scheduler: Any = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def global_config(self) -> Any:
        """The app's GlobalConfig (None when its storage has none)."""
        return getattr(getattr(self.app.broker, "storage", None), "global_config", None)

    # -- registration ---------------------------------------------------------------------------
    def add_task(
        self,
        *args: Any,
        task_name: Any = None,
        trigger: Any = None,
        priority: int | None = None,
        misfire_grace_time: float | None = DEFAULT_MISFIRE_GRACE_TIME,
        coalesce: bool = True,
        schedule_id: str | None = None,
        task_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Schedule:
        """Enqueue `task_name(*args, **kwargs)` on every tick of `trigger`.

        The name may come first (`add_task("report", trigger=t)`) or as `task_name=`. `trigger`
        is any APScheduler 3.x trigger. A tick later than `misfire_grace_time` seconds (None: no
        limit) is skipped; `coalesce` folds ticks missed while no timer ran into one. Replicas
        adding the same task, arguments and trigger share one `schedule_id`, hence one
        enqueue per tick; pass `schedule_id=` to name it yourself. `task_kwargs` holds keyword
        arguments of the task named like one of this method's own (`trigger`, `priority`, ...).

        Raises `UnknownTaskError` for a task the app does not register (unless it registers
        none), `TaskArgumentsError` for arguments the task does not accept, `TaskOptionError`
        for a priority that is not an int, a `schedule_id` that is not text or a `coalesce` that
        is not a bool, and `InvalidTriggerError` for a missing or foreign trigger.
        """
        name, task_args = _split_name(args, task_name)
        what = f"schedule of task {name!r}"
        if task_kwargs is not None:
            kwargs = _merge_task_kwargs(what, task_kwargs, kwargs)
        self._check_task(name, task_args, kwargs)
        if priority is not None:  # checked now, not at the first tick
            priority = check_priority(priority, what)
        if schedule_id is not None and (type(schedule_id) is not str or not schedule_id):
            raise TaskOptionError(
                f"{what}: schedule_id must be a non-empty str, not {schedule_id!r}"
            )
        if type(coalesce) is not bool:
            raise TaskOptionError(f"{what}: coalesce must be a bool, not {coalesce!r}")
        check_trigger(trigger)
        grace = _check_grace(misfire_grace_time)
        sid = schedule_id or Schedule.derive_id(name, trigger, task_args, kwargs, priority)
        if sid in self._schedules:
            raise DuplicateScheduleError(
                f"schedule {sid!r} was already added to this timer; pass schedule_id= to "
                "schedule the same task, arguments and trigger twice"
            )
        schedule = Schedule(
            id=sid,
            task_name=name,
            trigger=trigger,
            args=task_args,
            kwargs=dict(kwargs),
            priority=priority,
            misfire_grace_time=grace,
            coalesce=bool(coalesce),
        )
        self._schedules[sid] = schedule
        if self._running:
            self._activate_running(schedule)
        return schedule

    def _check_task(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # The same rule as app.add_task, checked now rather than at the first tick.
        tasks = self.app.tasks
        definition = tasks.get(name)
        if definition is None:
            if tasks and not getattr(self.app.config, "enqueue_unknown_tasks", False):
                raise UnknownTaskError(
                    f"cannot schedule task {name!r}: it is not registered in app "
                    f"{self.app.name!r} (registered: {', '.join(sorted(tasks))})"
                )
        else:
            definition.check_arguments(args, kwargs)
        # Arguments that cannot be sent (not JSON, over the payload cap) would fail every tick.
        envelope = self.app.broker.make_envelope(name, 0, None, args, kwargs)
        encode(envelope, self.app.config.max_payload_bytes)

    def _activate_running(self, schedule: Schedule) -> None:
        """Register a schedule added while the timer runs."""
        raise NotImplementedError

    def _add_job(self, schedule: Schedule, first: datetime | None) -> None:
        if first is None:
            self.log.info("schedule %s: the trigger has no further ticks", schedule.id)
            return
        self._scheduler.add_job(
            executor_only,
            trigger=schedule.trigger,
            id=schedule.id,
            name=f"qtasks timer: {schedule.task_name}",
            next_run_time=first,
            coalesce=schedule.coalesce,
            misfire_grace_time=None,
            max_instances=MAX_INSTANCES,
            replace_existing=True,
        )

    # -- flows ----------------------------------------------------------------------------------
    def _start_flow(self) -> Flow[None]:
        if self.global_config is None:
            self.log.warning(
                "app %r has no GlobalConfig: ticks are not claimed, so every timer process "
                "enqueues each tick; run a single timer",
                self.app.name,
            )
        yield from self.app.plugins.flow("timer_start", {"timer": self})

    def _stop_flow(self) -> Flow[None]:
        yield from self.app.plugins.flow("timer_stop", {"timer": self})

    def _activate_flow(self, schedule: Schedule) -> Flow[datetime | None]:
        """Create or read the schedule's record, catch up missed ticks per its misfire policy,
        and return the first tick for the scheduler (None: no further ticks)."""
        now = utcnow()
        record = yield from self._load_flow(schedule)
        if record is None:
            schedule.registered_at = now.timestamp()
            created = yield from self._create_flow(
                schedule, first_fire(schedule.trigger, now, None)
            )
            if not created:  # another replica created it first
                record = yield from self._load_flow(schedule)
        if record is not None:
            schedule.adopt(record)
        last_run = from_epoch(schedule.last_run)
        first = first_fire(schedule.trigger, now, last_run)
        if record is not None and _definition_changed(record, schedule):
            yield from self._save_flow(schedule, first)
        since = last_run or from_epoch(schedule.registered_at) or now
        plan = plan_catch_up(
            schedule.trigger,
            since,
            now,
            schedule.misfire_grace_time,
            schedule.coalesce,
            exclude=first,
        )
        self._log_plan(schedule, since, plan)
        if plan.run and (yield from self._claim_catch_up_flow(schedule, since)):
            for fire in plan.run:
                yield from self._guarded_tick_flow(schedule, fire)
        return first

    def _ticks_flow(self, schedule_id: str, run_times: list[datetime]) -> Flow[None]:
        schedule = self._schedules.get(schedule_id)
        if schedule is None:
            return
        for run_time in run_times:
            yield from self._guarded_tick_flow(schedule, run_time)

    def _guarded_tick_flow(self, schedule: Schedule, run_time: datetime) -> Flow[Any]:
        # One failed tick (broker or GlobalConfig down) is logged; the next tick still runs.
        try:
            return (yield from self._tick_flow(schedule, run_time))
        except Exception:
            self.log.exception("schedule %s: tick %s failed", schedule.id, run_time.isoformat())
            return None

    def _tick_flow(self, schedule: Schedule, run_time: datetime) -> Flow[Any]:
        """Claim the tick; if this timer won it, enqueue the task and record the run."""
        late = time.time() - run_time.timestamp()
        grace = schedule.misfire_grace_time
        if grace is not None and late > grace:
            self.log.warning(
                "schedule %s: tick %s skipped: %.1f s late, past misfire_grace_time=%s s",
                schedule.id,
                run_time.isoformat(),
                late,
                grace,
            )
            return None
        won = yield from self._claim_tick_flow(schedule, run_time)
        if not won:
            self.log.debug(
                "schedule %s: tick %s enqueued by another timer", schedule.id, run_time.isoformat()
            )
            return None
        values = yield from self.app.plugins.flow(
            "timer_add_task_before",
            {
                "timer": self,
                "schedule_id": schedule.id,
                "task_name": schedule.task_name,
                "priority": schedule.priority,
                "args": schedule.args,
                "kw": dict(schedule.kwargs),
                "trigger": schedule.trigger,
                "run_time": run_time,
            },
        )
        task = yield partial(self._enqueue, values, schedule.id, run_time)
        yield from self.app.plugins.flow(
            "timer_add_task_after",
            {
                "timer": self,
                "schedule_id": schedule.id,
                "task_name": values["task_name"],
                "task": task,
                "run_time": run_time,
            },
        )
        self.log.info(
            "schedule %s: tick %s enqueued %s",
            schedule.id,
            run_time.isoformat(),
            getattr(task, "uuid", None),
        )
        stamp = run_time.timestamp()
        if schedule.last_run is None or stamp >= schedule.last_run:
            schedule.last_run = stamp
            schedule.last_task_uuid = str(getattr(task, "uuid", "")) or None
            yield from self._save_flow(schedule, schedule.next_run_after(run_time))
        return task

    def _enqueue(self, values: dict[str, Any], schedule_id: str, run_time: datetime) -> Any:
        # `enqueue` is `add_task`'s option-taking twin (the same path, plugins included): it
        # reserves no keyword of the task (a task kwarg `timeout` would make add_task block),
        # and `extra` tags the record with its schedule and tick.
        extra = {"timer_schedule": schedule_id, "timer_tick": run_time.isoformat()}
        return self.app.enqueue(
            values["task_name"],
            tuple(values["args"]),
            dict(values["kw"]),
            priority=values["priority"],
            extra=extra,
        )

    # -- GlobalConfig ---------------------------------------------------------------------------
    def _claim_tick_flow(self, schedule: Schedule, run_time: datetime) -> Flow[bool]:
        config = self.global_config
        if config is None:
            return True
        claim = {"timer": self.timer_id, "at": time.time()}
        won = yield partial(
            config.set_nx, TICKS, schedule.tick_key(run_time), claim, schedule.claim_ttl(run_time)
        )
        return bool(won)

    def _claim_catch_up_flow(self, schedule: Schedule, since: datetime) -> Flow[bool]:
        # Replicas starting together see the same last run: one of them decides the catch-up,
        # so coalescing means one enqueue even when they would pick different newest ticks.
        config = self.global_config
        if config is None:
            return True
        claim = {"timer": self.timer_id, "at": time.time()}
        won = yield partial(
            config.set_nx,
            CATCH_UPS,
            f"{schedule.id}|{epoch_us(since)}",
            claim,
            schedule.claim_ttl(since),
        )
        return bool(won)

    def _load_flow(self, schedule: Schedule) -> Flow[dict[str, Any] | None]:
        config = self.global_config
        if config is None:
            return self._records.get(schedule.id)
        value = yield partial(config.get, SCHEDULES, schedule.id)
        return value if isinstance(value, dict) else None

    def _create_flow(self, schedule: Schedule, first: datetime | None) -> Flow[bool]:
        record = schedule.record(self.timer_id, first)
        config = self.global_config
        if config is None:
            self._records.setdefault(schedule.id, record)
            return True
        return bool((yield partial(config.set_nx, SCHEDULES, schedule.id, record, None)))

    def _save_flow(self, schedule: Schedule, next_run_time: datetime | None) -> Flow[None]:
        record = schedule.record(self.timer_id, next_run_time)
        self._records[schedule.id] = record
        config = self.global_config
        if config is not None:
            yield partial(config.set, SCHEDULES, schedule.id, record)

    def _schedules_flow(self) -> Flow[list[ScheduleStatus]]:
        stored: dict[str, Any] = dict(self._records)
        config = self.global_config
        if config is not None:
            stored.update((yield partial(config.get_all, SCHEDULES)) or {})
        now = utcnow()
        out = []
        for schedule in list(self._schedules.values()):
            record = stored.get(schedule.id)
            if isinstance(record, dict):
                schedule.adopt(record)
            out.append(
                ScheduleStatus(
                    id=schedule.id,
                    task_name=schedule.task_name,
                    trigger=describe(schedule.trigger),
                    next_run_time=self._next_run_time(schedule, now),
                    last_run=from_epoch(schedule.last_run),
                    last_task_uuid=schedule.last_task_uuid,
                    args=list(schedule.args),
                    kwargs=dict(schedule.kwargs),
                    priority=schedule.priority,
                    misfire_grace_time=schedule.misfire_grace_time,
                    coalesce=schedule.coalesce,
                    timer=record.get("timer") if isinstance(record, dict) else None,
                )
            )
        return out

    def _next_run_time(self, schedule: Schedule, now: datetime) -> datetime | None:
        if self._running and self._scheduler is not None:
            job = self._scheduler.get_job(schedule.id)
            if job is not None:
                return job.next_run_time  # type: ignore[no-any-return]
        return first_fire(schedule.trigger, now, from_epoch(schedule.last_run))

    def _log_plan(self, schedule: Schedule, since: datetime, plan: CatchUp) -> None:
        if plan.expired:
            self.log.warning(
                "schedule %s: ticks missed since %s older than misfire_grace_time=%s s are skipped",
                schedule.id,
                since.isoformat(),
                schedule.misfire_grace_time,
            )
        if plan.truncated:
            self.log.warning(
                "schedule %s: too many ticks missed since %s; only %d are enqueued",
                schedule.id,
                since.isoformat(),
                len(plan.run),
            )
        if plan.run:
            self.log.info(
                "schedule %s: catching up %d missed tick(s)%s",
                schedule.id,
                len(plan.run),
                f" ({plan.coalesced} coalesced)" if plan.coalesced else "",
            )


def _split_name(args: tuple[Any, ...], task_name: Any) -> tuple[str, tuple[Any, ...]]:
    if task_name is not None:
        name, rest = task_name, args
    elif args:
        name, rest = args[0], args[1:]
    else:
        raise TypeError("add_task needs the task's name: timer.add_task('name', trigger=...)")
    # A task handle (what @app.task returns) names its task.
    name = getattr(name, "task_name", name)
    if not isinstance(name, str) or not name:
        raise TypeError(f"the task name must be a non-empty str, got {name!r}")
    return name, tuple(rest)


def _merge_task_kwargs(what: str, task_kwargs: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(task_kwargs, dict) or not all(type(k) is str for k in task_kwargs):
        raise TaskOptionError(
            f"{what}: task_kwargs must be a dict of str keys, not {task_kwargs!r}"
        )
    both = task_kwargs.keys() & kwargs.keys()
    if both:
        raise TaskOptionError(
            f"{what}: {', '.join(sorted(both))} given both as keywords and in task_kwargs"
        )
    return {**kwargs, **task_kwargs}


def _check_grace(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(
            f"misfire_grace_time must be a positive number of seconds or None, got {value!r}"
        )
    return float(value)


def _definition_changed(record: dict[str, Any], schedule: Schedule) -> bool:
    return any(record.get(key) != value for key, value in schedule.definition().items())
