"""`fake_distribution`: install a distribution with entry points into a test's `sys.path`.

Writes a module and its `*.dist-info` (METADATA and entry_points.txt) under a temp dir, prepends
the dir to `sys.path` and clears the entry-point cache, so discovery sees it without pip.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from qtasks import _discovery


def fake_distribution(
    monkeypatch: Any,
    root: Path,
    dist: str,
    modules: dict[str, str],
    entry_points: dict[str, dict[str, str]],
    version: str = "0.1.0",
) -> Path:
    site = root / f"site-{dist}"
    site.mkdir()
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, items in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {target}" for name, target in items.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(site))
    # Fresh caches for this test; monkeypatch puts the originals back at teardown, so later
    # tests never see this distribution.
    monkeypatch.setattr(_discovery, "entry_points", cache(_discovery.entry_points.__wrapped__))
    monkeypatch.setattr(_discovery, "_load", cache(_discovery._load.__wrapped__))
    return site
