"""`TaskExecutor`: runs one task, with the executor triggers, middlewares and result encoding.

The steps (1.7's order, with its bugs fixed): middlewares "before", arguments (echo `self`,
`task_executor_args_replace`), `task_executor_before_execute`, the call (within `max_time`),
result triggers, middlewares "after", encoding to JSON, and always `task_executor_task_close`.
They are one flow; `SyncTaskExecutor` and `AsyncTaskExecutor` differ only in how they call the
function (`_invoke`). Subclass either and pass it as `@app.task(executor=...)` or
`worker.task_executor` to change a step.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from qtasks._drive import Flow, run_async, run_sync
from qtasks.contexts import Context, current_context
from qtasks.exc import ResultTooLargeError, SerializationError, TaskPluginTriggerError
from qtasks.executors.invoke import invoke_async, invoke_sync
from qtasks.plugins.manager import PluginHost
from qtasks.schemas.envelope import DEFAULT_MAX_RESULT, check_utf8, dumps

if TYPE_CHECKING:
    from qtasks.registries.definition import TaskExecSchema
    from qtasks.schemas.envelope import Envelope


@dataclass
class ArgMeta:
    """One parameter of the task function as the executor is about to pass it."""

    name: str
    value: Any
    is_kwarg: bool
    annotation: Any = None


class BaseTaskExecutor:
    is_async: ClassVar[bool] = False

    def __init__(
        self,
        task_func: TaskExecSchema,
        task_broker: Envelope,
        log: logging.Logger | None = None,
        plugins: PluginHost | None = None,
        worker: Any = None,
        app: Any = None,
    ) -> None:
        self.task_func = task_func
        self.task_broker = task_broker
        self.log = log or logging.getLogger("qtasks.executor")
        self.plugins = plugins or PluginHost()
        self.worker = worker
        self.app = app
        self.args: list[Any] = list(task_broker.args)
        self.kwargs: dict[str, Any] = dict(task_broker.kwargs)
        self.result_json: str | None = None
        self.on_cancellable: Callable[[Callable[[], object]], None] | None = None
        """Set by a worker that wants a way to interrupt the call (async code on threads)."""
        self.context = Context(
            task_func.name,
            task_broker.id,
            app,
            task_func.generate_handler,
            self.is_async,
            task_broker.attempt,
            task_func.awaiting,
        )

    @abstractmethod
    def _invoke(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call the task function within `max_time`; return its result (a generator's yields,
        after `generate_handler`). Raise `TaskTimeoutError` on time."""

    # -- steps ------------------------------------------------------------------------------------
    def args_info(self) -> list[ArgMeta]:
        names = list(self.task_func.public_signature.parameters)
        info = [ArgMeta(n, v, False) for n, v in zip(names, self.args, strict=False)]
        info += [ArgMeta(k, v, True) for k, v in self.kwargs.items()]
        return info

    def _middlewares_flow(self, position: str) -> Flow[None]:
        middlewares = (
            self.task_func.middlewares_before
            if position == "before"
            else self.task_func.middlewares_after
        )
        if self.worker is not None:
            middlewares = [*getattr(self.worker, f"task_middlewares_{position}", []), *middlewares]
        if not middlewares:
            return
        if self.plugins.wants_for("task_executor_middlewares_execute", self.task_func):
            yield from self.plugins.executor(
                "task_executor_middlewares_execute",
                task_executor=self,
                middlewares=middlewares,
                position=position,
            )
        for middleware in middlewares:
            yield middleware(self)  # a middleware instance is called; it may mutate `self`

    def _before_flow(self) -> Flow[None]:
        if self.plugins.wants_for("task_executor_args_replace", self.task_func):
            out = yield from self.plugins.executor(
                "task_executor_args_replace",
                task_executor=self,
                args=self.args,
                kw=self.kwargs,
                args_info=self.args_info(),
            )
            self.args, self.kwargs = list(out["args"]), dict(out["kw"])
        if self.task_func.echo:
            handle = None if self.app is None else self.app.handles.get(self.task_func.name)
            self.args = [handle, *self.args]
        if self.plugins.wants_for("task_executor_before_execute", self.task_func):
            yield from self.plugins.executor("task_executor_before_execute", task_executor=self)

    def _run_flow(self) -> Flow[Any]:
        try:
            result = yield partial(self._invoke, self.args, self.kwargs)
        except TaskPluginTriggerError as exc:
            out = yield from self.plugins.executor(
                "task_executor_run_task_trigger_error",
                task_executor=self,
                task_func=self.task_func,
                task_broker=self.task_broker,
                e=exc,
                result=None,
            )
            if out.get("result") is None:
                raise
            return out["result"]
        if self.task_func.generating:
            if not self.plugins.wants_for("task_executor_run_task_gen", self.task_func):
                return result
            out = yield from self.plugins.executor(
                "task_executor_run_task_gen", task_executor=self, results=result
            )
            return out["results"]
        if not self.plugins.wants_for("task_executor_run_task", self.task_func):
            return result
        out = yield from self.plugins.executor(
            "task_executor_run_task", task_executor=self, result=result
        )
        return out["result"]

    def _decode_flow(self, result: Any) -> Flow[str]:
        encoder = self.task_func.decode
        if encoder is None and self.app is not None:
            encoder = self.app.config.task_default_decode
        what = f"result of task {self.task_func.name!r}"
        if encoder is None:
            text = dumps(result, what)
        else:
            text = encoder(result)
            if not isinstance(text, str):
                raise SerializationError(
                    f"decode of task {self.task_func.name!r} returned "
                    f"{type(text).__name__}, not JSON text"
                )
        if self.plugins.wants_for("task_executor_decode", self.task_func):
            out = yield from self.plugins.executor(
                "task_executor_decode", task_executor=self, result=text
            )
            text = out["result"]
        if encoder is not None:
            try:
                json.loads(text)
            except ValueError:
                raise SerializationError(f"{what} was encoded to text that is not JSON") from None
        text = str(text)
        ascii_only = text.isascii()
        if not ascii_only:  # a custom encoder's or a plugin's text (`dumps` checked its own)
            check_utf8(text, what)
        cap = DEFAULT_MAX_RESULT if self.app is None else self.app.config.max_result_bytes
        # Characters are a lower bound of the UTF-8 size, and four times them an upper one.
        if len(text) > cap or (not ascii_only and 4 * len(text) > cap and len(text.encode()) > cap):
            raise ResultTooLargeError(
                f"{what} encodes to {len(text.encode())} bytes, over the {cap}-byte cap "
                "(config.max_result_bytes)"
            )
        return text

    def _execute_flow(self, decode: bool = True) -> Flow[Any]:
        token = current_context.set(self.context)
        try:
            yield from self._middlewares_flow("before")
            yield from self._before_flow()
            result = yield from self._run_flow()
            plugins = self.plugins
            if plugins.wants_for("task_executor_after_execute", self.task_func):
                yield from plugins.executor("task_executor_after_execute", task_executor=self)
            if plugins.wants_for("task_executor_after_execute_result_replace", self.task_func):
                result = (
                    yield from plugins.executor(
                        "task_executor_after_execute_result_replace",
                        task_executor=self,
                        result=result,
                    )
                )["result"]
            yield from self._middlewares_flow("after")
            if decode:
                self.result_json = yield from self._decode_flow(result)
            return result
        finally:
            current_context.reset(token)
            if self.plugins.wants_for("task_executor_task_close", self.task_func):
                yield from self.plugins.executor(
                    "task_executor_task_close",
                    task_executor=self,
                    task_func=self.task_func,
                    task_broker=self.task_broker,
                )


class SyncTaskExecutor(BaseTaskExecutor):
    def execute(self, decode: bool = True) -> Any:
        return run_sync(self._execute_flow(decode))

    def _invoke(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        return invoke_sync(self.task_func, args, kwargs, self.on_cancellable)


class AsyncTaskExecutor(BaseTaskExecutor):
    is_async: ClassVar[bool] = True

    async def execute(self, decode: bool = True) -> Any:
        return await run_async(self._execute_flow(decode))

    async def _invoke(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        pool = getattr(self.worker, "thread_pool", None)
        return await invoke_async(self.task_func, args, kwargs, pool)
