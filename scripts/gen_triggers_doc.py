"""Write docs/triggers.md from `qtasks.hookspecs` (run after adding or changing a trigger).

`tests/test_docs_triggers.py` fails when the page and the specs disagree.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from qtasks import hookspecs

INTRO = """# Triggers

Every trigger a qtasks component fires, generated from `qtasks/hookspecs.py` by
`python scripts/gen_triggers_doc.py` (a test keeps the two in step).

## How to listen

* A pluggy hook implementation: a function or method named after the trigger, decorated with
  `@hookimpl` (`from qtasks import hookimpl`), declaring only the arguments it needs.
  Register it with `app.add_plugin(obj_or_module)`, or ship it in the entry-point group
  `qtasks.plugins` to have every `QueueTasks()` load it (see [plugins.md](plugins.md)).
* A `BasePlugin` with `self.handlers = {"trigger_name": callable}`, registered with
  `app.add_plugin(plugin, trigger_names=[...], component="worker")`. Handlers receive the
  trigger's arguments as keyword arguments. Without `trigger_names` the plugin receives every
  trigger of its component it has a handler for (or all of them if it overrides `trigger`).

## What a returned value does

Triggers marked **replaces** accept a dict and use only the listed keys: returning
`{"priority": 7}` from `qtasks_add_task_before_broker` changes the priority and nothing else.
`None` changes nothing. Implementations run in pluggy's order (last registered first;
`tryfirst`/`trylast` honoured) as a chain: each sees what the earlier ones returned.

## Errors

An implementation that raises is logged (`qtasks.plugins` logger, with the plugin's name and the
trigger) and skipped; the others still run and the component carries on. A plugin that fails to
import from an entry point is logged and skipped. A hook implementation whose name is not a
trigger is rejected when it is registered.

## Sync and async

On the asyncio app a handler may return an awaitable; it is awaited. On the sync app a handler
that returns an awaitable is an error (logged and skipped): use sync handlers there.
"""

TITLES = {
    "app": 'App (`component="app"`)',
    "broker": "Broker",
    "storage": "Storage",
    "global_config": "GlobalConfig",
    "worker": "Worker and task executor",
    "starter": "Starter",
    "stats": "Stats",
    "timer": "Timer (qtasks-timer)",
}


def render() -> str:
    parts = [INTRO]
    for component in hookspecs.COMPONENTS:
        names = [n for n, c in hookspecs.TRIGGER_COMPONENT.items() if c == component]
        if not names:
            continue
        parts.append(f"\n## {TITLES.get(component, component)}\n")
        for name in names:
            func = getattr(hookspecs, name)
            params = ", ".join(inspect.signature(func).parameters)
            doc = inspect.getdoc(func) or ""
            replaces = hookspecs.TRIGGER_REPLACES[name]
            parts.append(f"\n### `{name}`\n\n`{name}({params})`\n\n{doc}\n")
            if replaces:
                keys = ", ".join(f"`{k}`" for k in replaces)
                parts.append(f"\n**replaces:** {keys}\n")
    return "".join(parts)


def main() -> int:
    target = Path(__file__).resolve().parent.parent / "docs" / "triggers.md"
    target.write_text(render())
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
