"""`plugins` and `demo`: what is installed, and the in-memory demo."""

from __future__ import annotations

import argparse
from importlib.metadata import distributions
from typing import Any

from qtasks.cli.errors import EXIT_OK
from qtasks.cli.render import dump_json, table
from qtasks.plugins.manager import autoload_enabled, disabled_plugin_names

GROUPS = (
    "qtasks.brokers",
    "qtasks.storages",
    "qtasks.global_configs",
    "qtasks.workers",
    "qtasks.starters",
    "qtasks.timers",
    "qtasks.plugins",
    "qtasks.commands",
    "opentelemetry_instrumentor",
)


def installed_distributions() -> list[tuple[str, str, dict[str, list[str]]]]:
    """(name, version, {group: [entry point names]}) of every distribution taking part."""
    found: dict[str, tuple[str, str, dict[str, list[str]]]] = {}
    for dist in distributions():
        name = dist.metadata["Name"] or ""
        provided: dict[str, list[str]] = {}
        for ep in dist.entry_points:
            if ep.group in GROUPS and (
                ep.group != "opentelemetry_instrumentor" or "qtasks" in ep.value
            ):
                provided.setdefault(ep.group, []).append(ep.name)
        if provided or name.startswith("qtasks"):
            found[name] = (name, dist.version, provided)
    return sorted(found.values())


def plugin_hooks(entry_point_name: str) -> list[str]:
    """The triggers a `qtasks.plugins` entry point implements (empty if it fails to load)."""
    from qtasks import _discovery
    from qtasks.plugins.manager import PluginHost

    host = PluginHost()
    for ep in _discovery.entry_points("qtasks.plugins"):
        if ep.name == entry_point_name:
            try:
                plugin = ep.load()
            except Exception:  # noqa: BLE001 - listed as providing nothing
                return []
            return sorted(n for n in dir(plugin) if host.pm.parse_hookimpl_opts(plugin, n))
    return []


def cmd_plugins(args: argparse.Namespace) -> int:
    blocked = disabled_plugin_names()
    rows = []
    report = []
    for name, version, provided in installed_distributions():
        hooks = provided.get("qtasks.plugins", [])
        disabled = [h for h in hooks if h in blocked or not autoload_enabled()]
        triggers = {h: plugin_hooks(h) for h in hooks}
        report.append(
            {
                "distribution": name,
                "version": version,
                "provides": provided,
                "hooks": triggers,
                "disabled": disabled,
            }
        )
        shown = dict(provided)
        if triggers:
            shown["hooks"] = [t for names in triggers.values() for t in names]
        groups = sorted(shown.items()) or [("-", [])]
        for number, (group, eps) in enumerate(groups):
            first = number == 0
            rows.append(
                (
                    name if first else "",
                    version if first else "",
                    group.split(".")[-1],
                    ", ".join(sorted(eps)) or "-",
                    ", ".join(disabled) if first and disabled else "",
                )
            )
    if args.json:
        dump_json({"autoload": autoload_enabled(), "distributions": report})
    else:
        table(("distribution", "version", "group", "provides", "disabled"), rows)
        if not autoload_enabled():
            print("\nplugin autoload is off (QTASKS_DISABLE_PLUGIN_AUTOLOAD)")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from qtasks.demo import main

    return main()


def register(sub: Any) -> None:
    plugins = sub.add_parser("plugins", help="installed qtasks distributions and what they add")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(handler=cmd_plugins, needs_app=False)
    demo = sub.add_parser("demo", help="run an app end to end in memory (no server needed)")
    demo.set_defaults(handler=cmd_demo, needs_app=False)
