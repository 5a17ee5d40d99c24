"""The exception a failed task ended with, read back from its formatted traceback.

The worker hands plugins the exception object only after the final record was written, and the
consumer span ends before that write (see `plugin`), so the span's exception event is built from
`Task.traceback`, the text `traceback.format_exception` produced. It carries the same
`exception.*` attributes `Span.record_exception` would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "Type" or "module.Type: message", the line an exception is printed as (qualified names of
# local classes have `<locals>`; modules imported from paths can have `-`).
_HEAD = re.compile(r"([A-Za-z_][\w.<>-]*)(?:: (.*))?$")
_GROUP_PREFIX = "  | "


@dataclass(frozen=True, slots=True)
class ParsedError:
    type: str
    message: str
    stacktrace: str


def parse_traceback(text: str | None) -> ParsedError:
    """Type and first message line of the exception that escaped, as printed last in `text`.

    It is the first line after the last top-level frame that is not indented (frames' source
    lines and caret markers are). Chained exceptions are printed earlier; an exception group
    prints its own lines behind `  | ` and its members deeper; the worker cuts long tracebacks
    at the front (`...`), which can leave half a line before the exception line.
    """
    if not text:
        return ParsedError("Exception", "", "")
    lines = text.rstrip("\n").splitlines()
    if lines[0].lstrip().startswith("+ Exception Group Traceback"):
        lines = [line[len(_GROUP_PREFIX) :] for line in lines if line.startswith(_GROUP_PREFIX)]
    start = 0
    for index, line in enumerate(lines):
        if line.startswith(("  File ", "Traceback (")):
            start = index + 1
    for line in lines[start:]:
        match = None if line.startswith(" ") else _HEAD.match(line)
        if match:
            return ParsedError(match.group(1), (match.group(2) or "").strip(), text)
    return ParsedError("Exception", lines[-1].strip() if lines else "", text)
