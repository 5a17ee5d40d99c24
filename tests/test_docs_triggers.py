"""docs/triggers.md documents exactly the triggers `qtasks.hookspecs` declares."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from qtasks import hookspecs

PAGE = Path(__file__).resolve().parent.parent / "docs" / "triggers.md"
FIX = "run `uv run python scripts/gen_triggers_doc.py` and review the page"


def documented() -> dict[str, str]:
    text = PAGE.read_text()
    return dict(re.findall(r"^### `(\w+)`\n\n`(\w+\([^`]*\))`", text, flags=re.M))


def test_every_spec_is_documented_with_its_signature() -> None:
    pages = documented()
    missing = sorted(set(hookspecs.TRIGGER_COMPONENT) - set(pages))
    assert not missing, f"triggers missing from docs/triggers.md: {missing}; {FIX}"
    for name in hookspecs.TRIGGER_COMPONENT:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert pages[name] == f"{name}({params})", f"signature of {name} differs; {FIX}"


def test_page_names_no_trigger_that_no_spec_declares() -> None:
    extra = sorted(set(documented()) - set(hookspecs.TRIGGER_COMPONENT))
    assert not extra, f"docs/triggers.md names undeclared triggers: {extra}; {FIX}"


def test_every_spec_has_a_docstring() -> None:
    undocumented = [
        n for n in hookspecs.TRIGGER_COMPONENT if not inspect.getdoc(getattr(hookspecs, n))
    ]
    assert not undocumented
