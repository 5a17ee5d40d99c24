"""The `qtasks` command line (placeholder until the CLI issue lands: `demo` only)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["demo"]:
        from qtasks.demo import main as demo

        return int(demo())
    print("usage: qtasks demo", file=sys.stderr)
    return 2
