"""Release gate: do the built wheels share the `qtasks` namespace safely?

    python scripts/check_wheels.py DIST_DIR

Every first-party wheel (distribution `qtasks-*`) is opened. Problems, one line each:
- a non-core wheel ships `qtasks/__init__.py` or `qtasks/py.typed` (pip would let the last
  installed wheel overwrite core's, and uninstalling the plugin would delete it), or any file
  that another wheel also ships, or a file directly in `qtasks/`, or anything besides
  exactly one leaf `qtasks/<leaf>/` named after the distribution, or a leaf that is one
  of core's own directories;
- a wheel that must register components lacks `entry_points.txt`;
- first-party wheels and sdists disagree on the version.
Exit 1 on any problem, 0 otherwise; a summary goes to stdout either way.
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

CORE = "qtasks-core"
NAMESPACE = "qtasks"
# Wheels that must carry entry points. Core registers its built-in components; add
# qtasks-redis and qtasks-timer here once their pyproject files declare theirs.
REQUIRE_ENTRY_POINTS = frozenset({CORE, "qtasks-redis", "qtasks-timer"})
# Files of the shared namespace dir itself: core's alone.
SHARED_FILES = frozenset({f"{NAMESPACE}/__init__.py", f"{NAMESPACE}/py.typed"})
_SDIST = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)\.tar\.gz$")


def normalize(name: str) -> str:
    """PEP 503 name: `qtasks_core` and `QTasks.Core` both become `qtasks-core`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_first_party(name: str) -> bool:
    return name == NAMESPACE or name.startswith(NAMESPACE + "-")


@dataclass
class Wheel:
    path: Path
    name: str
    version: str
    files: set[str]
    entry_point_groups: list[str] = field(default_factory=list)

    @property
    def payload(self) -> set[str]:
        """Files that land in site-packages, without the wheel's own metadata."""
        return {f for f in self.files if not f.split("/", 1)[0].endswith((".dist-info", ".data"))}

    @property
    def leaves(self) -> set[str]:
        return {
            parts[1]
            for parts in (PurePosixPath(f).parts for f in self.payload)
            if len(parts) > 2 and parts[0] == NAMESPACE
        }

    @property
    def has_entry_points(self) -> bool:
        return any(f.endswith(".dist-info/entry_points.txt") for f in self.files)


def read_wheel(path: Path) -> Wheel:
    with zipfile.ZipFile(path) as zf:
        files = {n for n in zf.namelist() if not n.endswith("/")}
        meta_name = next(f for f in files if f.endswith(".dist-info/METADATA"))
        meta = HeaderParser().parsestr(zf.read(meta_name).decode())
        eps = next((f for f in files if f.endswith(".dist-info/entry_points.txt")), None)
        groups = re.findall(r"^\[([^\]]+)\]", zf.read(eps).decode(), re.M) if eps else []
    return Wheel(path, normalize(meta["Name"]), meta["Version"], files, groups)


def check_plugin(wheel: Wheel, core: Wheel | None) -> list[str]:
    problems = []
    where = wheel.path.name
    for shared in sorted(SHARED_FILES):
        if shared in wheel.payload:
            problems.append(f"{where}: ships {shared}, which only {CORE} may ship")
    for f in sorted(wheel.payload):
        parts = PurePosixPath(f).parts
        if parts[0] != NAMESPACE:
            problems.append(f"{where}: ships {f} outside {NAMESPACE}/<leaf>/")
        elif len(parts) == 2 and f not in SHARED_FILES:
            problems.append(f"{where}: ships {f} directly in the shared {NAMESPACE}/ dir")
    leaves = wheel.leaves
    if len(leaves) > 1:
        problems.append(f"{where}: ships {len(leaves)} leaves {sorted(leaves)}; one allowed")
    expected = wheel.name.removeprefix(NAMESPACE + "-")
    if leaves and leaves != {expected}:
        problems.append(f"{where}: leaf {sorted(leaves)} should be {NAMESPACE}/{expected}/")
    if core is not None:
        for leaf in sorted(leaves & core.leaves):
            problems.append(f"{where}: puts files in {NAMESPACE}/{leaf}/, a directory of {CORE}")
    return problems


def check(wheels: list[Wheel], sdists: dict[str, str]) -> list[str]:
    problems: list[str] = []
    by_name: dict[str, Wheel] = {}
    for wheel in wheels:
        if wheel.name in by_name:
            problems.append(f"{wheel.path.name}: a second wheel of {wheel.name}")
        by_name[wheel.name] = wheel
    core = by_name.get(CORE)
    if core is None:
        problems.append(f"no {CORE} wheel in the dist dir")
    elif f"{NAMESPACE}/__init__.py" not in core.payload:
        problems.append(f"{core.path.name}: does not ship {NAMESPACE}/__init__.py")

    owners: dict[str, str] = {}
    for wheel in wheels:
        if wheel is not core:
            problems += check_plugin(wheel, core)
        if wheel.name in REQUIRE_ENTRY_POINTS and not wheel.has_entry_points:
            problems.append(f"{wheel.path.name}: no entry_points.txt; it must register components")
        for f in sorted(wheel.payload):
            if wheel is not core and f in SHARED_FILES:
                continue  # already reported by check_plugin
            other = owners.setdefault(f, wheel.name)
            if other != wheel.name:
                problems.append(f"{wheel.path.name}: ships {f}, which {other} also ships")

    versions = {w.name: w.version for w in wheels} | {f"{n} (sdist)": v for n, v in sdists.items()}
    if len(set(versions.values())) > 1:
        listing = ", ".join(f"{n}=={v}" for n, v in sorted(versions.items()))
        problems.append(f"first-party versions differ: {listing}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist_dir", type=Path)
    args = parser.parse_args(argv)
    dist: Path = args.dist_dir
    wheels = [read_wheel(p) for p in sorted(dist.glob("*.whl"))]
    wheels = [w for w in wheels if is_first_party(w.name)]
    sdists = {}
    for p in sorted(dist.glob("*.tar.gz")):
        m = _SDIST.match(p.name)
        if m and is_first_party(normalize(m["name"])):
            sdists[normalize(m["name"])] = m["version"]
    if not wheels:
        print(f"check_wheels: no first-party wheels in {dist}")
        return 1

    for w in wheels:
        leaves = ",".join(sorted(w.leaves)) if w.name != CORE else "(namespace owner)"
        groups = ", ".join(w.entry_point_groups) or "-"
        print(
            f"{w.name:16} {w.version:10} {len(w.payload):4} files  leaf: {leaves:18} "
            f"entry points: {groups}"
        )
    problems = check(wheels, sdists)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    verdict = f"{len(problems)} problem(s)" if problems else "OK"
    print(f"check_wheels: {len(wheels)} wheel(s), {len(sdists)} sdist(s) checked: {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
