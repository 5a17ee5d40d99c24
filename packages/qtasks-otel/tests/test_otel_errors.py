"""Reading the exception back from a formatted traceback."""

from __future__ import annotations

import sys
import traceback

import pytest

from qtasks.otel._errors import parse_traceback


class CustomError(Exception):
    pass


def formatted(exc: Exception) -> str:
    try:
        raise exc
    except Exception as caught:  # noqa: BLE001 - whatever was raised, to format it
        return "".join(traceback.format_exception(type(caught), caught, caught.__traceback__))


def test_builtin_and_custom_types() -> None:
    assert parse_traceback(formatted(ValueError("bad"))).type == "ValueError"
    custom = parse_traceback(formatted(CustomError("x: y")))
    assert custom.type.endswith("CustomError") and custom.message == "x: y"


def test_multiline_message_keeps_its_first_line() -> None:
    parsed = parse_traceback(formatted(KeyError("a\nb")))
    assert parsed.type == "KeyError"


def test_message_less_exception() -> None:
    parsed = parse_traceback(formatted(RuntimeError()))
    assert (parsed.type, parsed.message) == ("RuntimeError", "")


def test_chained_exception_reports_the_last() -> None:
    try:
        try:
            raise KeyError("first")
        except KeyError as exc:
            raise TypeError("second") from exc
    except TypeError as caught:
        text = "".join(traceback.format_exception(type(caught), caught, caught.__traceback__))
    parsed = parse_traceback(text)
    assert (parsed.type, parsed.message) == ("TypeError", "second")
    assert "KeyError" in parsed.stacktrace


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups")
def test_exception_group() -> None:
    group = ExceptionGroup("many", [ValueError("a"), KeyError("b")])  # noqa: F821
    parsed = parse_traceback(formatted(group))
    assert parsed.type == "ExceptionGroup" and parsed.message.startswith("many")


def test_truncated_and_empty() -> None:
    text = formatted(ValueError("tail"))
    assert parse_traceback("...\n" + text[-60:]).type == "ValueError"
    assert parse_traceback(None).type == "Exception"
    assert parse_traceback("").type == "Exception"
