"""The plugin host: registration, scoping, replacement semantics and the error policy."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from qtasks import QueueTasks, hookimpl
from qtasks.plugins import BasePlugin
from qtasks.plugins.manager import PluginHost


def make_app(name: str) -> QueueTasks:
    return QueueTasks(name=name, broker_url=f"memory://{name}")


def test_seed_plugin_example_sees_task_args(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app("plug-seed")

    class TestPlugin(BasePlugin):
        def __init__(self) -> None:
            super().__init__()
            self.handlers = {"task_executor_args_replace": self.replace}

        def replace(self, **kwargs: Any) -> None:
            print("ARGS:", kwargs)

    app.add_plugin(TestPlugin(), trigger_names=["task_executor_args_replace"], component="worker")

    @app.task(name="test")
    def sample_task(id: int) -> str:
        return f"User {id} recorded"

    with app:
        task = app.add_task("test", 5, timeout=5)
    assert task is not None and task.returning == "User 5 recorded"
    out = capsys.readouterr().out
    assert "ARGS:" in out and "'args': [5]" in out


def test_returned_dict_replaces_only_its_keys() -> None:
    app = make_app("plug-partial")

    class Prioritiser:
        @hookimpl
        def qtasks_add_task_before_broker(self, priority: int) -> dict[str, Any]:
            return {"priority": 7, "not_a_key": "ignored"}

    app.add_plugin(Prioritiser())

    @app.task(name="echo")
    def echo(a: int, b: str = "x") -> list[Any]:
        return [a, b]

    task = app.add_task("echo", 1, b="y")
    assert task is not None
    assert task.priority == 7 and task.args == (1,) and task.kwargs == {"b": "y"}


def test_chain_sees_earlier_replacements() -> None:
    host = PluginHost()
    seen: list[Any] = []

    class First:
        @hookimpl(tryfirst=True)
        def task_executor_run_task(self, result: Any) -> dict[str, Any]:
            return {"result": result + 1}

    class Second:
        @hookimpl(trylast=True)
        def task_executor_run_task(self, result: Any) -> dict[str, Any]:
            seen.append(result)
            return {"result": result * 10}

    host.add_plugin(First())
    host.add_plugin(Second())
    out = host.fire_sync("task_executor_run_task", task_executor=None, result=1)
    assert seen == [2] and out["result"] == 20


def test_raising_plugin_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    host = PluginHost()

    class Broken:
        @hookimpl(tryfirst=True)
        def task_executor_run_task(self, result: Any) -> None:
            raise RuntimeError("plugin bug")

    class Working:
        @hookimpl
        def task_executor_run_task(self, result: Any) -> dict[str, Any]:
            return {"result": "kept going"}

    host.add_plugin(Working())
    host.add_plugin(Broken(), name="broken-plugin")
    with caplog.at_level(logging.ERROR, logger="qtasks.plugins"):
        out = host.fire_sync("task_executor_run_task", task_executor=None, result=None)
    assert out["result"] == "kept going"
    assert "broken-plugin" in caplog.text and "task_executor_run_task" in caplog.text


def test_component_scoping() -> None:
    host = PluginHost()
    calls: list[str] = []

    class Recorder(BasePlugin):
        def trigger(self, name: str, **kwargs: Any) -> None:
            calls.append(name)

    host.add_plugin(Recorder(), component="storage")
    host.fire_sync("storage_start", storage=None)
    host.fire_sync("worker_start", worker=None)
    assert calls == ["storage_start"]
    with pytest.raises(ValueError, match="fired by worker, not broker"):
        host.add_plugin(
            BasePlugin(), trigger_names=["task_executor_args_replace"], component="broker"
        )
    with pytest.raises(ValueError, match="unknown trigger"):
        host.add_plugin(BasePlugin(), trigger_names=["no_such_trigger"], component="worker")
    with pytest.raises(ValueError, match="component must be one of"):
        host.add_plugin(BasePlugin(), component="kitchen")


def test_misspelled_hookimpl_is_rejected() -> None:
    host = PluginHost()

    class Typo:
        @hookimpl
        def task_executor_args_replac(self) -> None:
            return None

    with pytest.raises(TypeError, match="hook qtasks does not have"):
        host.add_plugin(Typo())


def test_a_plugin_that_could_do_nothing_is_refused() -> None:
    # A name, a class instead of its instance, or an object without @hookimpl functions used
    # to be registered and to do nothing, silently.
    class Listener:
        @hookimpl
        def worker_execute_before(self) -> None: ...

    class Nothing:
        pass

    app = make_app("nothing")
    for plugin in ("otel", 5, Nothing()):
        with pytest.raises(TypeError, match="neither a BasePlugin nor an object or module"):
            app.add_plugin(plugin)
    app.add_plugin(Listener)  # a class with @hookimpl methods is such an object, as in pluggy
    app.add_plugin(Listener())


def test_a_middleware_or_router_of_the_wrong_kind_is_refused_when_added() -> None:
    # A middleware that is not callable used to fail every task in the worker instead.
    app = make_app("wrong-kinds")
    with pytest.raises(TypeError, match="a middleware is a class"):
        app.add_middleware("audit")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="include_router takes a Router, not int"):
        app.include_router(5)  # type: ignore[arg-type]
    assert app.worker.task_middlewares_before == []


async def test_async_handlers_are_awaited() -> None:
    from qtasks.asyncio import QueueTasks as AsyncQueueTasks

    app = AsyncQueueTasks(name="plug-async", broker_url="memory://plug-async")

    class AsyncPlugin(BasePlugin):
        def __init__(self) -> None:
            super().__init__()
            self.handlers = {"task_executor_run_task": self.double}
            self.started = False

        async def double(self, result: Any, **kwargs: Any) -> dict[str, Any]:
            return {"result": result * 2}

        async def start(self, *args: Any, **kwargs: Any) -> None:
            self.started = True

    plugin = AsyncPlugin()
    app.add_plugin(plugin, component="worker")

    @app.task(name="one")
    async def one() -> int:
        return 21

    async with app:
        task = await app.add_task("one", timeout=5)
        assert plugin.started
    assert task is not None and task.returning == 42


def test_async_handler_on_sync_app_is_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app("plug-async-on-sync")

    class AsyncOnSync(BasePlugin):
        def __init__(self) -> None:
            super().__init__()
            self.handlers = {"qtasks_add_task_before_broker": self.handler}

        async def handler(self, **kwargs: Any) -> None:
            return None

    app.add_plugin(AsyncOnSync())

    @app.task(name="t")
    def t() -> None:
        return None

    with caplog.at_level(logging.ERROR):
        assert app.add_task("t") is not None  # the plugin is skipped, the enqueue goes on
    assert "awaitable in a sync component" in caplog.text


def test_entry_point_autoload_switches(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from qtasks.testing.distributions import fake_distribution

    hooks = """
from qtasks import hookimpl

@hookimpl
def qtasks_add_task_before_broker(extra):
    return {"extra": {**extra, "fake": "loaded"}}
"""
    fake_distribution(
        monkeypatch,
        tmp_path,
        "qtasks-fake",
        {"qtasks_fake": hooks},
        {"qtasks.plugins": {"fake": "qtasks_fake"}},
    )

    def extra_of(app_name: str) -> dict[str, Any]:
        app = make_app(app_name)

        @app.task(name="t")
        def t() -> None:
            return None

        task = app.add_task("t")
        assert task is not None
        return task.extra

    assert extra_of("ep-on") == {"fake": "loaded"}
    monkeypatch.setenv("QTASKS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert extra_of("ep-off") == {}
    monkeypatch.delenv("QTASKS_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("QTASKS_DISABLED_PLUGINS", "other, fake")
    assert extra_of("ep-blocked") == {}


def test_broken_entry_point_plugin_is_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from qtasks.testing.distributions import fake_distribution

    fake_distribution(
        monkeypatch,
        tmp_path,
        "qtasks-broken",
        {"qtasks_broken": "raise ImportError('missing dependency')\n"},
        {"qtasks.plugins": {"broken": "qtasks_broken"}},
    )
    with caplog.at_level(logging.WARNING, logger="qtasks.plugins"):
        app = make_app("ep-broken")
    assert "broken" in caplog.text and "skipped" in caplog.text
    assert not app.plugins.pm.has_plugin("broken")


def test_typed_trigger_families_match_the_hookspecs() -> None:
    from typing import get_args

    from qtasks import hookspecs
    from qtasks.plugins.triggers import FAMILIES

    declared: dict[str, set[str]] = {}
    for name, component in hookspecs.TRIGGER_COMPONENT.items():
        family = "executor" if name.startswith("task_executor_") else component
        declared.setdefault(family, set()).add(name)
    typed = {family: set(get_args(alias)) for family, alias in FAMILIES.items()}
    assert {k: v for k, v in typed.items() if v} == declared


def test_executor_triggers_skip_plugins_that_do_not_apply_to_the_task() -> None:
    """`applies_to(task_func)` on a plugin: an executor trigger whose implementations all
    decline a task is not fired for it; a plugin without `applies_to` is always asked."""
    app = make_app("plug-applies")
    seen: list[tuple[str, str]] = []

    class OnlyTagged:
        @staticmethod
        def applies_to(task_func: Any) -> bool:
            return task_func.name.startswith("tagged")

        @hookimpl
        def task_executor_args_replace(self, task_executor: Any) -> None:
            seen.append(("tagged-only", task_executor.task_func.name))

    class Everywhere:
        @hookimpl
        def task_executor_task_close(self, task_executor: Any) -> None:
            seen.append(("close", task_executor.task_func.name))

    app.add_plugin(OnlyTagged(), component="worker")
    app.add_plugin(Everywhere(), component="worker")

    @app.task(name="tagged_one")
    def tagged_one() -> int:
        return 1

    @app.task(name="plain")
    def plain() -> int:
        return 2

    with app:
        assert app.add_task("tagged_one", timeout=5).returning == 1  # type: ignore[union-attr]
        assert app.add_task("plain", timeout=5).returning == 2  # type: ignore[union-attr]
    assert ("tagged-only", "tagged_one") in seen and ("tagged-only", "plain") not in seen
    assert ("close", "tagged_one") in seen and ("close", "plain") in seen
    assert not app.plugins.wants_for("task_executor_args_replace", app.tasks["plain"])


def test_a_plugin_that_returns_a_bad_option_is_refused_like_a_caller() -> None:
    from qtasks.exc import TaskOptionError

    class Prioritiser:
        @hookimpl
        def qtasks_add_task_before_broker(self, headers: dict[str, str]) -> dict[str, Any]:
            return {"priority": "high", "headers": {**headers, "trace": "t-1"}}

    class Tracer:
        @hookimpl
        def qtasks_add_task_before_broker(self, headers: dict[str, str]) -> dict[str, Any]:
            return {"headers": {**headers, "attempt": 1}}

    for plugin, message in ((Prioritiser(), "priority must be an int"), (Tracer(), "headers")):
        app = make_app("bad-plugin")

        @app.task(name="t")
        def t() -> None: ...

        app.add_plugin(plugin)
        with pytest.raises(TaskOptionError, match=message):
            app.add_task("t")
        assert sum(q["ready"] for q in app.broker.stats()["queues"].values()) == 0
