"""`BaseQueueTasks`: what the sync and asyncio apps share (registration, assembly, flows)."""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

from qtasks._drive import Flow
from qtasks._state import set_default_app
from qtasks.apps import assembly
from qtasks.brokers.base import BaseBroker
from qtasks.configs.config import QueueConfig
from qtasks.events import Events
from qtasks.exc import TaskOptionError, UnknownTaskError
from qtasks.plugins.builtin.depends import DependsPlugin
from qtasks.plugins.builtin.retry import RetryPlugin
from qtasks.plugins.builtin.state import StatePlugin
from qtasks.plugins.manager import PluginHost
from qtasks.registries.handles import TaskCls
from qtasks.registries.registrar import Router, TaskRegistrar, shared_registry
from qtasks.schemas.envelope import Envelope
from qtasks.schemas.options import (
    ENQUEUE_OPTIONS,
    check_call,
    check_name,
    check_options,
    check_priority,
    check_seconds,
)
from qtasks.schemas.task import Task, storable_text, stored_id
from qtasks.workers.base import BaseWorker

_APP_HOOKS: list[Callable[[BaseQueueTasks], None]] = []


def on_app_created(hook: Callable[[BaseQueueTasks], None]) -> Callable[[], None]:
    """Call `hook(app)` at the end of every app's construction from now on (integrations that
    equip every app: OpenTelemetry's instrumentor, Sentry's integration); returns the function
    that stops it. Each integration removes only its own hook, whatever the order in which
    they came and go (wrapping `__init__` in turn, they undid each other)."""
    _APP_HOOKS.append(hook)

    def stop() -> None:
        if hook in _APP_HOOKS:
            _APP_HOOKS.remove(hook)

    return stop


# The ids of manual retries (`app.retry`), made from the retried record's.
_RETRY_IDS = uuidlib.UUID("6f1c2f5e-0b7a-4d59-9a43-7a1e2b8c4d10")

try:
    __version__ = version("qtasks-core")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"


class BaseQueueTasks(TaskRegistrar):
    is_async: ClassVar[bool] = False

    def __init__(
        self,
        name: str = "QueueTasks",
        broker_url: str | None = None,
        broker: Any = None,
        worker: Any = None,
        global_config: Any = None,
        config: QueueConfig | None = None,
        log: logging.Logger | None = None,
        events: Events | None = None,
        storage_url: str | None = None,
        *,
        load_entry_points: bool = True,
    ) -> None:
        super().__init__()
        assembly.check_app(name, broker_url, storage_url)
        self.name = name
        self.version = __version__
        self.config = config if config is not None else QueueConfig()
        self.log = log if log is not None else logging.getLogger(f"qtasks.app.{name}")
        self.events = events if events is not None else Events()
        self.plugins = PluginHost()
        for plugin, label in (
            (RetryPlugin(), "qtasks.retry"),
            (DependsPlugin(), "qtasks.depends"),
            (StatePlugin(), "qtasks.state"),
        ):
            self.plugins.add_plugin(plugin, name=label)
        if load_entry_points:
            self.plugins.load_entry_points()
        assembly.check_flavour(
            self.is_async, broker=broker, worker=worker, global_config=global_config
        )
        if broker is None:
            broker = assembly.build_broker(
                name, self.is_async, broker_url, storage_url, global_config
            )
        if global_config is not None:
            # Also when the broker was built from a URL: the seed's `QueueTasks(global_config=c)`
            # means `app.broker.storage.global_config is c`.
            broker.storage.global_config = global_config
        if worker is None:
            worker = assembly.build_worker(name, self.is_async, broker)
        elif worker.broker is None:
            worker.broker = broker
        self.broker: BaseBroker = broker
        self.worker: BaseWorker = worker
        self.starter: Any = assembly.build_starter(name, self.is_async, broker, worker)
        self.routers: list[Router] = []
        for component in (broker, worker, self.starter):
            component.bind(self.plugins, self.config, self.events)
        broker.storage.app = self
        worker.app = self
        worker.tasks = self.tasks
        self._merge_shared()
        set_default_app(self)
        for hook in list(_APP_HOOKS):
            hook(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} broker={self.broker!r}>"

    # -- registration ---------------------------------------------------------------------------
    def _priority(self) -> int:
        return self.config.task_default_priority

    def _app_ref(self) -> Any:
        return self

    def _merge_shared(self) -> None:
        for name, definition in shared_registry.tasks.items():
            if name not in self.tasks:
                self.tasks[name] = definition
                handle = shared_registry.handles[name]
                handle.app = self
                self.handles[name] = handle

    def include_router(self, router: Router) -> None:
        """Add a router's tasks; a name already registered is an error."""
        if not isinstance(router, TaskRegistrar):
            raise TypeError(f"include_router takes a Router, not {type(router).__name__}")
        clash = set(router.tasks) & set(self.tasks)
        if clash:
            raise ValueError(f"tasks already registered: {', '.join(sorted(clash))}")
        self.tasks.update(router.tasks)
        for name, handle in router.handles.items():
            handle.app = self
            self.handles[name] = handle
        self.routers.append(router)

    def add_plugin(
        self, plugin: Any, trigger_names: list[str] | None = None, component: str | None = None
    ) -> None:
        """Register a `BasePlugin` for `component`'s triggers (or `trigger_names`), or an object
        or module of `@hookimpl` functions. Every component of this app shares one host."""
        self.plugins.add_plugin(plugin, trigger_names, component)

    def add_middleware(self, middleware: type[Any], position: str = "before") -> None:
        """Run `middleware(task_executor)()` before or after every task of this app."""
        if position not in ("before", "after"):
            raise ValueError("position must be 'before' or 'after'")
        if not callable(middleware):  # else every task would fail in the worker
            raise TypeError(
                f"a middleware is a class (called with the task executor), not {middleware!r}"
            )
        getattr(self.worker, f"task_middlewares_{position}").append(middleware)

    # -- flows ----------------------------------------------------------------------------------
    def _envelope_flow(
        self,
        task_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int | None,
        eta: float | None,
        queue: str | None,
        extra: dict[str, Any] | None,
        headers: dict[str, str] | None,
        uuid: str | None = None,
    ) -> Flow[Envelope]:
        if type(task_name) is not str or not task_name:
            check_name(task_name)
        if not (priority is None or type(priority) is int) or not (
            eta is None and queue is None and headers is None and extra is None
        ):  # the usual call has none of these: its checks cost nothing
            priority, eta, queue = check_options(task_name, priority, eta, queue, headers, extra)
        definition = self.tasks.get(task_name)
        if definition is None:
            if self.tasks and not self.config.enqueue_unknown_tasks:
                raise UnknownTaskError(
                    f"task {task_name!r} is not registered in app {self.name!r} "
                    "(set config.enqueue_unknown_tasks to enqueue tasks defined elsewhere)"
                )
        else:
            definition.check_arguments(args, kwargs)
        if priority is None:
            priority = definition.priority if definition else self.config.task_default_priority
        if self.plugins.wants("qtasks_add_task_before_broker"):
            given = (task_name, priority, dict(extra or {}), dict(headers or {}), eta)
            values = yield from self.plugins.app(
                "qtasks_add_task_before_broker",
                qtasks=self,
                broker=self.broker,
                task_name=task_name,
                priority=priority,
                args=args,
                kw=kwargs,
                extra=given[2],
                headers=given[3],
                eta=eta,
                queue=queue,
            )
            task_name, priority, args, kwargs = (
                values["task_name"],
                values["priority"],
                values["args"],
                values["kw"],
            )
            extra, headers, eta = values["extra"], values["headers"], values["eta"]
            # What a plugin replaced is checked as the caller's values were (a plugin that
            # adds trace headers, the usual case, costs one check of its headers).
            if task_name is not given[0]:
                check_name(task_name)
            if priority is not given[1]:
                priority = check_priority(priority, f"task {task_name!r}")
            if not (extra is given[2] and headers is given[3] and eta is given[4]):
                _, eta, _ = check_options(task_name, None, eta, None, headers, extra)
        return self.broker.make_envelope(
            task_name,
            priority,
            extra,
            args,
            kwargs,
            uuid=uuid,
            eta=eta,
            headers=headers,
            queue=queue or (definition.queue if definition else None),
            retry=definition.retry if definition else None,
            _checked=True,
        )

    def _enqueue_flow(
        self,
        task_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int | None = None,
        timeout: float | None = None,
        eta: float | None = None,
        delay: float | None = None,
        queue: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Flow[Task | None]:
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout", f"task {task_name!r}", negative=False)
        if delay is not None:
            eta = time.time() + (check_seconds(delay, "delay", f"task {task_name!r}") or 0.0)
        env = yield from self._envelope_flow(
            task_name, args, kwargs, priority, eta, queue, extra, headers
        )
        task = yield from self._send_flow(env)
        if timeout is not None:
            return (yield from self._wait_flow(str(task.uuid), timeout, fresh=True))
        return task

    def _send_flow(self, env: Envelope) -> Flow[Task]:
        task = yield from self.broker._add_flow(env)
        if self.plugins.wants("qtasks_add_task_after_broker"):
            yield from self.plugins.app(
                "qtasks_add_task_after_broker",
                qtasks=self,
                broker=self.broker,
                task_name=env.task,
                priority=env.priority,
                args=tuple(env.args),
                kwargs=env.kwargs,
                task=task,
            )
        return task

    def _options_flow(
        self, task_name: str, args: Any, kwargs: Any, options: dict[str, Any]
    ) -> Flow[Task | None]:
        """`enqueue(task_name, args, kwargs, **options)`, its parts and option names checked
        first (a misspelt option would otherwise be a TypeError naming this method)."""
        args, kwargs = check_call(task_name, args, kwargs)
        unknown = options.keys() - ENQUEUE_OPTIONS
        if unknown:
            raise TaskOptionError(
                f"task {task_name!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"the options are {', '.join(sorted(ENQUEUE_OPTIONS))}"
            )
        return self._enqueue_flow(task_name, args, kwargs, **options)

    def _bulk_flow(self, calls: Iterable[TaskCls | tuple[Any, ...]]) -> Flow[list[Task]]:
        if not isinstance(calls, Iterable) or isinstance(calls, (str, bytes, dict)):
            raise TaskOptionError(
                f"add_tasks takes a list of calls, not {type(calls).__name__} {calls!r:.80}"
            )
        envelopes = []
        for call in calls:
            if isinstance(call, TaskCls):
                name, args, kwargs, priority = call.task_name, call.args, call.kwargs, call.priority
            else:
                if type(call) is not tuple or not 1 <= len(call) <= 4:
                    raise TaskOptionError(
                        "a bulk call is a TaskCls or a tuple (name, args, kwargs, priority), "
                        f"not {type(call).__name__} {call!r:.80}"
                    )
                defaults: tuple[Any, ...] = (None, (), {}, None)
                name, args, kwargs, priority = (*call, *defaults[len(call) :])
            if type(name) is str and type(args) is tuple and type(kwargs) is dict:
                kwargs = dict(kwargs)  # a call's kwargs may be shared (`[t(1)] * 100`)
            else:
                args, kwargs = check_call(name, args, kwargs)
            env = yield from self._envelope_flow(
                name, args, kwargs, priority, None, None, None, None
            )
            envelopes.append(env)
        return (yield from self.broker._add_many_flow(envelopes))

    def _wait_flow(self, uuid: str, timeout: float, fresh: bool = False) -> Flow[Task | None]:
        """The final record, following retry links, within `timeout`; woken by the write.
        `fresh`: the task was just enqueued here (its record cannot be final yet)."""
        if type(timeout) is not float:
            what = f"wait for {uuid!r}"
            if timeout is None:
                raise TaskOptionError(f"{what}: timeout must be a number of seconds, not None")
            timeout = check_seconds(timeout, "timeout", what, negative=False) or 0.0
        deadline = time.monotonic() + timeout
        statuses = frozenset(self.config.result_statuses_end) | {"retry"}
        if stored_id(uuid) is None:  # no task has it, and none ever will
            return None
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            task: Task | None = yield from self.broker.storage._wait_flow(
                uuid, remaining, statuses, fresh
            )
            fresh = False
            if task is None:
                return None
            if task.status == "retry" and task.retry_child_uuid:
                uuid = task.retry_child_uuid
                continue
            return task

    def _get_flow(self, uuid: str) -> Flow[Task | None]:
        task_id = stored_id(uuid)
        task: Task | None = None
        if task_id is not None:
            task = yield from self.broker._get_flow(task_id)
        if self.plugins.wants("qtasks_get"):
            task = (
                yield from self.plugins.app(
                    "qtasks_get", qtasks=self, broker=self.broker, task=task
                )
            )["task"]
        return task

    def _retry_flow(self, uuid: str) -> Flow[Task | None]:
        """Run a failed, cancelled or dead-lettered task again. A dead letter goes back to its
        queue under its own id; a finished record is re-enqueued as a new task linked to it
        (`extra["retried_from"]`), whose id is made from the record's, so that retrying it
        again (a double click, two operators) is the same task, enqueued once. None when there
        is nothing to retry."""
        if stored_id(uuid) is None:
            return None
        try:
            revived = yield from self.broker._admin_flow(self.broker._retry_dead, str(uuid))
        except NotImplementedError:  # a broker without dead letters
            revived = False
        if revived:
            return (yield from self._get_flow(str(uuid)))
        record = yield from self._get_flow(str(uuid))
        if record is None or record.status not in ("error", "cancel"):
            return None
        # An enqueue like any other: the task's current checks and retry policy, and the
        # enqueue triggers (a tracing plugin's send span and headers: the old ones are not
        # copied, the re-run is caused by this call).
        env = yield from self._envelope_flow(
            record.task_name,
            tuple(record.args),
            dict(record.kwargs),
            record.priority,
            None,
            record.queue,
            {**record.extra, "retried_from": str(uuid)},
            None,
            uuid=str(uuidlib.uuid5(_RETRY_IDS, str(record.uuid))),
        )
        return (yield from self._send_flow(env))

    def _cancel_flow(self, uuid: str, reason: str | None) -> Flow[str]:
        if reason is not None:
            reason = storable_text(str(reason))
        yield from self.plugins.app(
            "qtasks_cancel", qtasks=self, broker=self.broker, uuid=str(uuid), reason=reason
        )
        task_id = stored_id(uuid)
        if task_id is None:
            return "unknown"
        while True:
            outcome = yield from self.broker._cancel_flow(task_id, reason)
            if outcome != "final":
                return outcome
            # A failed attempt waiting for its retry is final, but its task is not: the retry
            # is cancelled, following the links as `wait` does.
            record = yield from self.broker._get_flow(task_id)
            if record is None or record.status != "retry" or not record.retry_child_uuid:
                return outcome
            task_id = record.retry_child_uuid

    def _ping_flow(self, server: bool) -> Flow[bool]:
        global_config = self.broker.storage.global_config
        yield from self.plugins.app("qtasks_ping", qtasks=self, global_config=global_config)
        if not server or global_config is None:
            return True
        return bool((yield global_config.is_running))

    def _flush_flow(self) -> Flow[None]:
        yield from self.plugins.app("qtasks_flush_all", qtasks=self, broker=self.broker)
        yield from self.broker._flush_flow()

    def _stop_flow(self) -> Flow[None]:
        yield from self.plugins.app("qtasks_stop", qtasks=self, starter=self.starter)

    def _signal_handler(self, first: Callable[[], None]) -> Callable[..., None]:
        """SIGTERM/SIGINT policy: the first signal calls `first` (drain), any later one makes
        the worker stop at once."""
        received = 0

        def on_signal(*_: Any) -> None:
            nonlocal received
            received += 1
            if received == 1:
                first()
            else:
                self.worker.force_stop()

        return on_signal

    def _use_starter(self, starter: Any) -> None:
        if starter is not None and starter is not self.starter:
            starter.broker = starter.broker or self.broker
            starter.worker = starter.worker or self.worker
            starter.bind(self.plugins, self.config, self.events)
            self.starter = starter

    # Used by Task.wait_result(_async); each app defines one natively.
    def _wait_sync(self, uuid: str, timeout: float) -> Task | None:
        raise NotImplementedError

    async def _wait_async(self, uuid: str, timeout: float) -> Task | None:
        raise NotImplementedError
