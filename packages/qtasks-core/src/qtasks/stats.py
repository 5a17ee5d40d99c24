"""`SyncStats` / `AsyncStats`: what an app is made of (static) and, where the components can
tell, live figures (queue depths, records per status).

`Stats(app).inspect()` fires `stats_inspect` and returns `InspectStats` with `.app()`,
`.tasks(*names)` and `.task(name)`, each a text table or, with `json=True`, JSON text.
"""

from __future__ import annotations

import json
from typing import Any

from qtasks._drive import Flow, run_async, run_sync
from qtasks.plugins.manager import PluginHost


class InspectStats:
    def __init__(self, app: Any) -> None:
        self._app = app

    def _task_info(self, name: str) -> dict[str, Any]:
        definition = self._app.tasks[name]
        params = list(definition.public_signature.parameters)
        return {
            "name": name,
            "priority": definition.priority,
            "description": definition.description,
            "tags": definition.tags or [],
            "awaiting": definition.awaiting,
            "generating": definition.generating,
            "echo": definition.echo,
            "max_time": definition.max_time,
            "retry": definition.retry,
            "queue": definition.queue,
            "args": params,
        }

    def app(self, json: bool = False) -> str:
        app = self._app
        info = {
            "name": app.name,
            "version": app.version,
            "method": "async" if app.is_async else "sync",
            "tasks": len(app.tasks),
            "routers": len(app.routers),
            "plugins": [name for name, _ in app.plugins.pm.list_name_plugin()],
            "broker": type(app.broker).__name__,
            "worker": type(app.worker).__name__,
            "storage": type(app.broker.storage).__name__,
            "global_config": type(app.broker.storage.global_config).__name__,
            "starter": type(app.starter).__name__,
            "config": {
                k: v
                for k, v in vars(app.config).items()
                if not k.startswith("_") and not callable(v)
            },
        }
        return _render(info, json)

    def tasks(self, *names: str, json: bool = False) -> str:
        chosen = names or tuple(sorted(self._app.tasks))
        return _render([self._task_info(n) for n in chosen], json)

    def task(self, name: str, json: bool = False) -> str:
        return _render(self._task_info(name), json)


def _render(data: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(data, default=str, indent=2)
    rows = data if isinstance(data, list) else [data]
    lines: list[str] = []
    for row in rows:
        width = max(len(k) for k in row)
        lines.extend(f"{k.ljust(width)}  {v}" for k, v in row.items())
        lines.append("")
    return "\n".join(lines).rstrip()


class _Stats:
    def __init__(self, app: Any, plugins: PluginHost | None = None) -> None:
        self.app = app
        self.plugins = plugins if plugins is not None else app.plugins

    def _inspect_flow(self) -> Flow[InspectStats]:
        yield from self.plugins.stats("stats_inspect", stats=self)
        return InspectStats(self.app)


class SyncStats(_Stats):
    def inspect(self) -> InspectStats:
        return run_sync(self._inspect_flow())


class AsyncStats(_Stats):
    async def inspect(self) -> InspectStats:
        return await run_async(self._inspect_flow())
