"""Run inside a venv holding qtasks-core and one plugin wheel (never the checkout):

    python -I scripts/probe_installed.py LEAF        # e.g. redis -> qtasks-redis

Checks that `qtasks.LEAF` and `qtasks` both import, that `qtasks/__init__.py` is core's
file (no plugin overwrote it, and it is no namespace package), that the plugin's module
comes from the plugin's own distribution, that the two versions match, and that every
entry point the plugin declares loads. Prints one line per check; exit 1 if any failed.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

CORE = "qtasks-core"


def owned_by(dist: md.Distribution, module_file: str | None) -> bool:
    """Does `dist`'s RECORD list the file the module was imported from?"""
    if module_file is None:
        return False
    target = Path(module_file).resolve()
    return any(Path(str(dist.locate_file(f))).resolve() == target for f in dist.files or ())


def main(leaf: str) -> int:
    dist_name = f"qtasks-{leaf}"
    core, plugin = md.distribution(CORE), md.distribution(dist_name)

    def leaf_imports() -> str:
        module = importlib.import_module(f"qtasks.{leaf}")
        assert module.__file__ is not None, f"qtasks.{leaf} has no __init__.py (namespace only)"
        assert owned_by(plugin, module.__file__), f"{module.__file__} is not {dist_name}'s"
        return str(module.__file__)

    def namespace_is_cores() -> str:
        import qtasks

        assert qtasks.__file__ is not None, "qtasks is a bare namespace package (no __init__)"
        assert owned_by(core, qtasks.__file__), f"{qtasks.__file__} is not {CORE}'s"
        assert hasattr(qtasks, "QueueTasks"), "qtasks.QueueTasks is missing"
        claimants = sorted(
            str(d.metadata["Name"])
            for d in md.distributions()
            if any(str(f) == "qtasks/__init__.py" for f in d.files or ())
        )
        assert claimants == [CORE], f"qtasks/__init__.py is claimed by {claimants}"
        return str(qtasks.__file__)

    def versions_match() -> str:
        assert core.version == plugin.version, f"{CORE} {core.version} != {plugin.version}"
        return core.version

    def entry_points_load() -> str:
        loaded = []
        for ep in plugin.entry_points:
            ep.load()
            loaded.append(f"{ep.group}:{ep.name}")
        return ", ".join(loaded) or "(none declared)"

    checks: list[Callable[[], str]] = [
        leaf_imports,
        namespace_is_cores,
        versions_match,
        entry_points_load,
    ]
    failed = 0
    for check in checks:
        try:
            print(f"ok   {dist_name}: {check.__name__}: {check()}")
        except Exception:  # noqa: BLE001 - every check reports, then the exit code says
            failed += 1
            print(f"FAIL {dist_name}: {check.__name__}:\n{traceback.format_exc()}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} LEAF")
    sys.exit(main(sys.argv[1]))
