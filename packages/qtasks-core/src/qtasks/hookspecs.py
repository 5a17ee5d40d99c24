"""Every trigger a qtasks component fires, as pluggy hook specifications.

Each spec says when it fires, which component fires it, and what a returned value does. Hooks
that accept a returned value take a dict and replace **only the keys it contains** (and only the
keys the spec lists): returning `{"priority": 7}` changes the priority and nothing else. `None`
changes nothing. Implementations run in pluggy's order (last registered first; `tryfirst` and
`trylast` honoured); each sees the values the earlier ones returned (a chain, like Dramatiq's
middlewares). An implementation that raises is
logged with its name and the trigger and skipped; the others still run.

Async components await handlers that return awaitables; sync components reject them with a clear
error. Write a handler once with `from qtasks import hookimpl` and the hook's name, or register a
`BasePlugin` whose `handlers` dict maps trigger names to callables taking `**kwargs`.

Names and arguments follow qtasks 1.7's 56 triggers; where 1.7 passed nothing useful (for example
`storage_add_process`) or passed a misnamed key (`worker_add` read `name`), the spec is fixed.
Triggers added in 2.0 say so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    from qtasks.schemas.envelope import Envelope
    from qtasks.schemas.task import Task

PROJECT = "qtasks"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

F = TypeVar("F", bound=Callable[..., Any])

COMPONENTS = ("app", "broker", "worker", "storage", "global_config", "starter", "stats", "timer")
TRIGGER_COMPONENT: dict[str, str] = {}
"""Which component fires each trigger (`add_plugin(component=...)` checks against it)."""
TRIGGER_REPLACES: dict[str, tuple[str, ...]] = {}
"""The keys of a returned dict that each trigger uses; other keys are ignored."""


def trigger(component: str, replaces: tuple[str, ...] = ()) -> Callable[[F], F]:
    def mark(func: F) -> F:
        TRIGGER_COMPONENT[func.__name__] = component
        TRIGGER_REPLACES[func.__name__] = replaces
        return hookspec(func)

    return mark


# =============================================================================================
# App: fired by QueueTasks itself (component="app")
# =============================================================================================
@trigger("app", replaces=("task_name", "priority", "extra", "args", "kw", "headers", "eta"))
def qtasks_add_task_before_broker(
    qtasks: Any,
    broker: Any,
    task_name: str,
    priority: int,
    args: tuple[Any, ...],
    kw: dict[str, Any],
    extra: dict[str, Any],
    headers: dict[str, str],
    eta: float | None,
    queue: str | None,
) -> dict[str, Any] | None:
    """`app.add_task` (and `enqueue`, `add_tasks`, and `app.retry` of a finished record), after
    validation and before the broker is called.

    Return any of `task_name`, `priority`, `extra`, `args`, `kw`, `headers`, `eta` to replace it.
    `headers` is where integrations put trace context; every broker carries it. `queue` is the
    one the caller named (`enqueue(queue=...)`), None for the task's own.
    """


@trigger("app")
def qtasks_add_task_after_broker(
    qtasks: Any,
    broker: Any,
    task_name: str,
    priority: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    task: Task,
) -> None:
    """`app.add_task` (and `enqueue`, and `app.retry` of a finished record; not `add_tasks`),
    after the broker accepted the task (`task` is its `new` record)."""


@trigger("app", replaces=("task",))
def qtasks_get(qtasks: Any, broker: Any, task: Task | None) -> dict[str, Any] | None:
    """`app.get(uuid)`, with the record found (or None). Return `{"task": ...}` to replace it."""


@trigger("app")
def qtasks_stop(qtasks: Any, starter: Any) -> None:
    """`app.stop()`, before the starter stops the components."""


@trigger("app")
def qtasks_ping(qtasks: Any, global_config: Any) -> None:
    """`app.ping()`, before the heartbeat key is read."""


@trigger("app")
def qtasks_flush_all(qtasks: Any, broker: Any) -> None:
    """`app.flush_all()`, before every key of the app is deleted."""


@trigger("app")
def qtasks_cancel(qtasks: Any, broker: Any, uuid: str, reason: str | None) -> None:
    """`app.cancel(uuid)`, before the cancel is sent. Added in 2.0."""


# =============================================================================================
# Broker (component="broker")
# =============================================================================================
@trigger("broker")
def broker_listen_start(broker: Any, worker: Any) -> None:
    """The broker's consume loop starts for `worker`."""


@trigger("broker", replaces=("task_name", "uuid", "priority", "args", "kw", "created_at"))
def broker_add_worker(
    broker: Any,
    worker: Any,
    task_name: str,
    uuid: str,
    priority: int,
    args: list[Any],
    kw: dict[str, Any],
    created_at: float,
) -> dict[str, Any] | None:
    """Each claimed task, before it is handed to the worker. Returned keys replace the task's."""


@trigger("broker", replaces=("model",))
def broker_add_before(broker: Any, storage: Any, model: Task) -> dict[str, Any] | None:
    """`broker.add`, before the `new` record and queue entry are written. May replace `model`."""


@trigger("broker")
def broker_add_after(broker: Any, storage: Any, model: Task) -> None:
    """`broker.add`, after the record and the queue entry were written (atomically)."""


@trigger("broker", replaces=("task",))
def broker_get(broker: Any, task: Task | None) -> dict[str, Any] | None:
    """`broker.get(uuid)`. Return `{"task": ...}` to replace the record returned."""


@trigger("broker", replaces=("kw",))
def broker_update(broker: Any, kw: dict[str, Any]) -> dict[str, Any] | None:
    """`broker.update(**kw)`, before it is forwarded to storage. May replace `kw`."""


@trigger("broker")
def broker_start(broker: Any, worker: Any) -> None:
    """`broker.start(worker)`, after storage started and before consuming begins."""


@trigger("broker")
def broker_stop(broker: Any) -> None:
    """`broker.stop()`. Broker-scoped `Depends` are closed here."""


@trigger("broker", replaces=("model",))
def broker_remove_finished_task(broker: Any, storage: Any, model: Task) -> dict[str, Any] | None:
    """The final write of a task (record + acknowledgement), before it is made. May replace
    `model`; the write still checks the lease token."""


@trigger("broker")
def broker_running_older_tasks(broker: Any, worker: Any) -> None:
    """At start with `config.running_older_tasks`, before lapsed leases are returned."""


@trigger("broker")
def broker_flush_all(broker: Any) -> None:
    """`broker.flush_all()`, before queues are deleted."""


@trigger("broker")
def broker_task_recovered(broker: Any, uuid: str, recoveries: int) -> None:
    """The reaper returned a task whose lease lapsed (its worker died). Added in 2.0."""


@trigger("broker")
def broker_task_dead(broker: Any, uuid: str, reason: str, sample: str) -> None:
    """A queue entry went to the dead-letter set (`reason`: decode_error, invalid_schema,
    oversized, unknown_task, poison). `sample` is at most 1 KiB of it. Added in 2.0."""


# =============================================================================================
# Storage (component="storage")
# =============================================================================================
@trigger("storage", replaces=("uuid", "task_status"))
def storage_add(storage: Any, uuid: str, task_status: Task) -> dict[str, Any] | None:
    """`storage.add(uuid, task_status)`, before the record is written."""


@trigger("storage", replaces=("result",))
def storage_get(storage: Any, result: Task) -> dict[str, Any] | None:
    """`storage.get(uuid)` found a record. Return `{"result": ...}` to replace it."""


@trigger("storage", replaces=("results",))
def storage_get_all(storage: Any, results: list[Task]) -> dict[str, Any] | None:
    """`storage.get_all()`. Return `{"results": [...]}` to replace the list."""


@trigger("storage", replaces=("kw",))
def storage_update(storage: Any, kw: dict[str, Any]) -> dict[str, Any] | None:
    """`storage.update(name=, mapping=)`, before the write. May replace `kw`."""


@trigger("storage")
def storage_remove_finished_task(storage: Any, task_broker: Envelope, model: Task) -> None:
    """After a task's final record was written."""


@trigger("storage")
def storage_start(storage: Any) -> None:
    """`storage.start()` (after its global config started)."""


@trigger("storage")
def storage_stop(storage: Any) -> None:
    """`storage.stop()`. Storage-scoped `Depends` are closed here."""


@trigger("storage", replaces=("task_data", "priority"))
def storage_add_process(storage: Any, task_data: Task, priority: int) -> dict[str, Any] | None:
    """A task is recorded as running (status `process`); fixed in 2.0 to pass the record."""


@trigger("storage", replaces=("task_name", "uuid", "priority", "created_at", "args", "kw"))
def storage_running_older_tasks(
    storage: Any,
    worker: Any,
    task_name: str,
    uuid: str,
    priority: int,
    created_at: float,
    args: list[Any],
    kw: dict[str, Any],
) -> dict[str, Any] | None:
    """Each task found with a lapsed lease at start-up recovery; fixed in 2.0 to pass its data."""


@trigger("storage")
def storage_delete_finished_tasks(storage: Any) -> None:
    """At start with `config.delete_finished_tasks`, before finished records are deleted."""


@trigger("storage")
def storage_flush_all(storage: Any) -> None:
    """`storage.flush_all()`, before every record is deleted."""


# =============================================================================================
# GlobalConfig (component="global_config")
# =============================================================================================
@trigger("global_config", replaces=("name_", "key", "value"))
def global_config_set(
    global_config: Any, name_: str, key: str, value: Any
) -> dict[str, Any] | None:
    """`global_config.set(name, key, value)`, before the write. The name is passed as `name_`
    (as in 1.7, so it never clashes with `BasePlugin.trigger(name, ...)`); return `name_`,
    `key` or `value` to replace them (1.7 read `name` back and so ignored it)."""


@trigger("global_config", replaces=("get",))
def global_config_get(global_config: Any, get: Any) -> dict[str, Any] | None:
    """`global_config.get(key, name)`. Return `{"get": ...}` to replace the value read."""


@trigger("global_config", replaces=("get",))
def global_config_get_all(global_config: Any, get: dict[str, Any]) -> dict[str, Any] | None:
    """`global_config.get_all(key)`. Return `{"get": ...}` to replace the mapping read."""


@trigger("global_config", replaces=("get",))
def global_config_get_match(global_config: Any, get: dict[str, Any]) -> dict[str, Any] | None:
    """`global_config.get_match(match)`. Return `{"get": ...}` to replace the mapping read."""


@trigger("global_config")
def global_config_start(global_config: Any) -> None:
    """`global_config.start()`, before the running-status heartbeat begins."""


@trigger("global_config")
def global_config_stop(global_config: Any) -> None:
    """`global_config.stop()`. GlobalConfig-scoped `Depends` are closed here."""


@trigger("global_config")
def global_config_set_status(global_config: Any) -> None:
    """The running-status heartbeat loop starts."""


# =============================================================================================
# Worker (component="worker")
# =============================================================================================
@trigger("worker", replaces=("task_name", "uuid", "priority", "args", "kw", "created_at"))
def worker_add(
    worker: Any,
    task_name: str,
    uuid: str,
    priority: int,
    args: list[Any],
    kw: dict[str, Any],
    created_at: float,
) -> dict[str, Any] | None:
    """`worker.add(...)`: a claimed task enters the worker's local queue (1.7 read `name`)."""


@trigger("worker", replaces=("model",))
def worker_execute_before(
    worker: Any, task_broker: Envelope, task_func: Any, model: Task
) -> dict[str, Any] | None:
    """Before the `process` record is written and the task starts. May replace `model`."""


@trigger("worker")
def worker_execute_after(worker: Any, task_func: Any, task_broker: Envelope, model: Task) -> None:
    """After the task's final record was written (1.7 did not pass `worker`)."""


@trigger("worker", replaces=("task_func", "task_broker"))
def worker_run_task_before(
    worker: Any, task_func: Any, task_broker: Envelope
) -> dict[str, Any] | None:
    """Before the executor is built for a task. May replace the definition or the envelope."""


@trigger("worker", replaces=("model",))
def worker_task_error_retry(
    worker: Any,
    broker: Any,
    task_func: Any,
    task_broker: Envelope,
    trace: str,
    exception: BaseException,
    model: Task,
) -> dict[str, Any] | None:
    """A task with `retry` left raised an exception matching `retry_on_exc`. The built-in retry
    plugin enqueues the next attempt and returns `{"model": <record with status retry>}`."""


@trigger("worker", replaces=("task_broker", "model"))
def worker_remove_finished_task(
    worker: Any, broker: Any, task_func: Any, task_broker: Envelope, model: Task
) -> dict[str, Any] | None:
    """Before the final record is handed to `broker.remove_finished_task`."""


@trigger("worker")
def worker_start(worker: Any) -> None:
    """`worker.start()`, before consuming begins."""


@trigger("worker")
def worker_stop(worker: Any) -> None:
    """`worker.stop()`, after draining. Worker-scoped `Depends` are closed here."""


@trigger("worker")
def worker_task_success(worker: Any, task_func: Any, task_broker: Envelope, model: Task) -> None:
    """A task ended with status `success` and its record was written. Added in 2.0."""


@trigger("worker")
def worker_task_error(
    worker: Any, task_func: Any, task_broker: Envelope, model: Task, exception: BaseException
) -> None:
    """A task attempt failed (status `error`, or `retry` when another attempt follows; see
    `model.status`) and its record was written. Added in 2.0."""


@trigger("worker")
def worker_task_cancel(worker: Any, task_func: Any, task_broker: Envelope, model: Task) -> None:
    """A task ended with status `cancel` and its record was written. Added in 2.0."""


# =============================================================================================
# TaskExecutor: fired by the executor that runs one task, on the worker's plugins
# =============================================================================================
@trigger("worker", replaces=("args", "kw"))
def task_executor_args_replace(
    task_executor: Any, args: list[Any], kw: dict[str, Any], args_info: list[Any]
) -> dict[str, Any] | None:
    """Before the task function is called; `args_info` describes its parameters. Return `args`
    and/or `kw` to replace them (`Depends` and `State` are injected this way)."""


@trigger("worker")
def task_executor_before_execute(task_executor: Any) -> None:
    """After arguments were prepared, just before the task function runs."""


@trigger("worker", replaces=("result",))
def task_executor_run_task(task_executor: Any, result: Any) -> dict[str, Any] | None:
    """After a (non-generator) task function returned. May replace `result`."""


@trigger("worker", replaces=("results",))
def task_executor_run_task_gen(task_executor: Any, results: list[Any]) -> dict[str, Any] | None:
    """After a generator task was consumed (`results`: what it yielded, after
    `generate_handler`). May replace `results`."""


@trigger("worker", replaces=("result",))
def task_executor_run_task_trigger_error(
    task_executor: Any, task_func: Any, task_broker: Envelope, e: BaseException
) -> dict[str, Any] | None:
    """The task raised `TaskPluginTriggerError` (`self.ctx.plugin_error`). Return `{"result":
    ...}` to make that the task's result; with no result the error stands."""


@trigger("worker")
def task_executor_after_execute(task_executor: Any) -> None:
    """After the task function returned and its result hooks ran."""


@trigger("worker", replaces=("result",))
def task_executor_after_execute_result_replace(
    task_executor: Any, result: Any
) -> dict[str, Any] | None:
    """After `task_executor_after_execute`. May replace `result`."""


@trigger("worker")
def task_executor_middlewares_execute(
    task_executor: Any, middlewares: list[Any], position: str
) -> None:
    """Before the task's middlewares of `position` ("before" or "after") run."""


@trigger("worker", replaces=("result",))
def task_executor_decode(task_executor: Any, result: str) -> dict[str, Any] | None:
    """After the result was encoded to JSON text. May replace the text."""


@trigger("worker")
def task_executor_task_close(task_executor: Any, task_func: Any, task_broker: Envelope) -> None:
    """Last step of every execution, success or not. Task-scoped `Depends` are closed here."""


# =============================================================================================
# Starter, Stats
# =============================================================================================
@trigger("starter")
def starter_start(starter: Any) -> None:
    """`starter.start()`, before plugins and components start."""


@trigger("starter")
def starter_stop(starter: Any) -> None:
    """`starter.stop()`, after components stopped, before plugins stop."""


@trigger("stats")
def stats_inspect(stats: Any) -> None:
    """`Stats.inspect()` builds its report."""


# =============================================================================================
# Timer (component="timer"): fired by qtasks-timer's SyncTimer and AsyncTimer. Added in 2.0.
# =============================================================================================
@trigger("timer")
def timer_start(timer: Any) -> None:
    """`timer.start()` (also `run_forever()` and `with timer:`), before its schedules are
    registered and ticks missed while no timer ran are caught up. Added in 2.0."""


@trigger("timer")
def timer_stop(timer: Any) -> None:
    """`timer.stop()`, after its scheduler shut down and the enqueues in flight finished.
    Added in 2.0."""


@trigger("timer", replaces=("task_name", "priority", "args", "kw"))
def timer_add_task_before(
    timer: Any,
    schedule_id: str,
    task_name: str,
    priority: int | None,
    args: tuple[Any, ...],
    kw: dict[str, Any],
    trigger: Any,
    run_time: Any,
) -> dict[str, Any] | None:
    """A scheduled tick, after this timer won the tick's claim (so it fires once per tick across
    every timer process) and before the app enqueues it. `trigger` is the APScheduler trigger,
    `run_time` the tick's scheduled time (an aware datetime). Return any of `task_name`,
    `priority`, `args`, `kw` to replace it. The enqueue then fires the app's
    `qtasks_add_task_*_broker` triggers like any other. Added in 2.0."""


@trigger("timer")
def timer_add_task_after(
    timer: Any, schedule_id: str, task_name: str, task: Task, run_time: Any
) -> None:
    """A scheduled tick was enqueued; `task` is its `new` record. Added in 2.0."""
