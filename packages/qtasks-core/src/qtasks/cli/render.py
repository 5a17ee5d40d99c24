"""Plain output: tables for people, JSON for programs, progress only on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def dump_json(data: Any, out: TextIO = sys.stdout) -> None:
    print(json.dumps(data, indent=2, default=str, sort_keys=True), file=out)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO = sys.stdout) -> None:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for number, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if number == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class Progress:
    """`done/total` on one rewritten line on a terminal; a final line otherwise."""

    def __init__(self, label: str, total: int, out: TextIO = sys.stderr) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.out = out
        self.live = out.isatty()

    def step(self, count: int = 1) -> None:
        self.done += count
        if self.live:
            print(f"\r{self.label}: {self.done}/{self.total}", end="", file=self.out, flush=True)

    def finish(self) -> None:
        prefix = "\r" if self.live else ""
        print(f"{prefix}{self.label}: {self.done}/{self.total} done", file=self.out)


def task_dict(task: Any) -> dict[str, Any]:
    """A record for `--json`: numbers as numbers, times as epoch seconds, absent fields left
    out (they were the storage's strings: `"priority": "0"`)."""
    from qtasks.schemas.task import _TIMES, id_text

    out: dict[str, Any] = {
        "status": task.status,
        "uuid": id_text(task),
        "priority": task.priority,
        "task_name": task.task_name,
        "queue": task.queue,
        "args": list(task.args),
        "kwargs": task.kwargs,
        "returning": task.returning,
        "attempt": task.attempt,
        "recoveries": task.recoveries,
        "execution_time": task.execution_time,
    }
    for name in _TIMES:
        moment = getattr(task, name)
        if moment is not None:
            out[name] = moment.timestamp()
    for name in ("traceback", "worker", "retry", "retry_child_uuid", "retry_parent_uuid"):
        if getattr(task, name) is not None:
            out[name] = getattr(task, name)
    if task.cancel_reason is not None:
        out["cancel_reason"] = task.cancel_reason
    if task.extra:
        out["extra"] = task.extra
    return out
