"""The wire envelope: what a broker carries for one task, and its JSON codec.

JSON only, never pickle: content can name a task but never choose code. Decoding is strict (a
versioned schema with typed fields and caps on size and depth), so anything else found in a queue
becomes a typed `DecodeError` that the broker dead-letters with a short sample.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from qtasks.exc import DecodeError, PayloadTooLargeError, SerializationError

ENVELOPE_VERSION = 1
DEFAULT_MAX_PAYLOAD = 1024 * 1024
DEFAULT_MAX_RESULT = 64 * 1024 * 1024
MAX_DEPTH = 64
SAMPLE_BYTES = 1024

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _one_shot_encoder() -> Any:
    """The C encoder `_encoder.encode` builds on every call, built once (0.7 us of 2.3 per
    envelope). Without circular-reference markers: a cycle ends in `RecursionError`, which
    `dumps` reports like any other unencodable value. None where the C module is missing."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encoder = make(
            None,
            _encoder.default,
            json.encoder.encode_basestring,
            None,
            ":",
            ",",
            False,
            False,
            False,
        )
        probe = {"a": [1, 2.5, "é", None, True], "b": {}}
        if "".join(encoder(probe, 0)) != _encoder.encode(probe):
            return None
    except TypeError:  # another signature than CPython 3.10-3.14's
        return None
    return encoder


_c_encode = _one_shot_encoder()


@dataclass(slots=True)
class Envelope:
    """One task on the wire.

    `priority`: lower runs first. `eta`: epoch seconds before which it must not start.
    `attempt`: 0 for the first run, n for the n-th retry. `retry`: retries left.
    `headers`: string metadata for integrations (trace context), carried by every broker.
    `extra`: user metadata that ends up on the record.
    """

    id: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    queue: str = "default"
    eta: float | None = None
    created_at: float = 0.0
    attempt: int = 0
    retry: int | None = None
    parent: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # The id as a UUID when it was made as one (not sent: `new_record` skips parsing it back).
    made_uuid: UUID | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "id": self.id,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "priority": self.priority,
            "queue": self.queue,
            "created_at": self.created_at,
        }
        # Optional fields are omitted when empty: smaller payloads on the hot path.
        if self.eta is not None:
            out["eta"] = self.eta
        if self.attempt:
            out["attempt"] = self.attempt
        if self.retry is not None:
            out["retry"] = self.retry
        if self.parent is not None:
            out["parent"] = self.parent
        if self.headers:
            out["headers"] = self.headers
        if self.extra:
            out["extra"] = self.extra
        return out


def dumps(value: Any, what: str = "value") -> str:
    """Encode `value` as compact JSON, raising `SerializationError` that says what failed."""
    try:
        if _c_encode is None:
            text: str = _encoder.encode(value)
        else:
            text = "".join(_c_encode(value, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{what} is not JSON-serialisable: {exc}") from None
    if not text.isascii():  # a flag of the str object: free for the usual ASCII text
        check_utf8(text, what)
    return text


def check_utf8(text: str, what: str) -> None:
    """`SerializationError` unless `text` encodes as UTF-8: the JSON encoder keeps non-ASCII
    text as it is, a lone surrogate (`os.fsdecode` makes them of undecodable bytes) included,
    and Redis' client would refuse it only when the write is packed, failing the whole batch."""
    _utf8(text, what)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise SerializationError(
            f"{what} is not valid UTF-8 text: {exc.object[exc.start : exc.end]!r} "
            f"at character {exc.start}"
        ) from None


_quote = json.encoder.encode_basestring


def _finite(value: Any) -> bool:
    return type(value) is float and math.isfinite(value)


def _plain_fields(e: Envelope) -> bool:
    """Every fixed field of its plain type, so `_json_text` formats them itself."""
    return (
        type(e.id) is type(e.task) is type(e.queue) is str
        and type(e.priority) is int
        and _finite(e.created_at)
        and (e.eta is None or _finite(e.eta))
        and type(e.attempt) is int
        and (e.retry is None or type(e.retry) is int)
        and (e.parent is None or type(e.parent) is str)
    )


def _json_text(e: Envelope, what: str) -> str:
    """The envelope as JSON, with only its arguments, headers and extras going through the
    encoder (in one call): the fixed fields are formatted here, in half the time of encoding
    them, paid on every enqueue. A field not of its plain type (an int subclass's repr is no
    JSON number) takes the encoder, which also raises the errors."""
    if not _plain_fields(e):
        return dumps(e.to_dict(), what)
    text = (
        f'{{"v":{ENVELOPE_VERSION},"id":{_quote(e.id)},"task":{_quote(e.task)},'
        f'"priority":{e.priority},"queue":{_quote(e.queue)},"created_at":{e.created_at!r}'
    )
    if e.eta is not None:
        text += f',"eta":{e.eta!r}'
    if e.attempt:
        text += f',"attempt":{e.attempt}'
    if e.retry is not None:
        text += f',"retry":{e.retry}'
    if e.parent is not None:
        text += f',"parent":{_quote(e.parent)}'
    if not (e.args or e.kwargs or e.headers or e.extra):
        return text + ',"args":[],"kwargs":{}}'
    rest: dict[str, Any] = {"args": e.args, "kwargs": e.kwargs}
    if e.headers:
        rest["headers"] = e.headers
    if e.extra:
        rest["extra"] = e.extra
    return text + "," + dumps(rest, what)[1:]


def encode(envelope: Envelope, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Envelope to bytes; `PayloadTooLargeError` past `max_bytes`, before anything is written."""
    what = f"arguments of task {envelope.task!r}"
    data = _utf8(_json_text(envelope, what), what)
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"task {envelope.task!r} encodes to {len(data)} bytes, over the {max_bytes}-byte cap"
        )
    return data


# Digits of the largest int `encodes_surely` lets through (a Python int has no upper bound).
_SMALL = 10**15
# The payload of an envelope without arguments, headers or extras, less its four texts: keys,
# punctuation, two floats (repr: at most 24 characters each) and three ints under `_SMALL`.
_FIXED_BYTES = 256


def encodes_surely(e: Envelope, max_bytes: int) -> bool:
    """Whether `encode(e, max_bytes)` cannot raise, known without encoding: no arguments,
    headers or extras (the parts that can fail to serialise), every fixed field of its plain
    type, ASCII texts (nothing for UTF-8 to refuse, at most six bytes per character escaped) and
    small ints, and so a payload surely under the cap. A bulk enqueue checks its envelopes
    whole before it writes any; such envelopes are encoded later, while Redis files the calls
    before theirs (`BaseBroker._add_many_flow`)."""
    if e.args or e.kwargs or e.headers or e.extra or not _plain_fields(e):
        return False
    parent = e.parent or ""
    if not (e.id.isascii() and e.task.isascii() and e.queue.isascii() and parent.isascii()):
        return False
    if not (-_SMALL < e.priority < _SMALL and 0 <= e.attempt < _SMALL):
        return False
    if e.retry is not None and not -_SMALL < e.retry < _SMALL:
        return False
    texts = len(e.id) + len(e.task) + len(e.queue) + len(parent)
    return 6 * texts + _FIXED_BYTES <= max_bytes


def sample(data: bytes | str) -> str:
    """At most 1 KiB of a payload, printable, for dead-letter entries and logs."""
    raw = data.encode(errors="replace") if isinstance(data, str) else data
    return raw[:SAMPLE_BYTES].decode("utf-8", errors="replace")


def _check_depth(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError(f"nesting deeper than {MAX_DEPTH}", "invalid_schema")
    if isinstance(value, dict):
        for item in value.values():
            _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"non-standard JSON constant {name}", "decode_error")


# Built once: `json.loads` with a keyword argument builds a decoder per call.
_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = obj.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise DecodeError(f"field {key!r} has type bool", "invalid_schema")
    if not isinstance(value, kind):
        raise DecodeError(f"field {key!r} has type {type(value).__name__}", "invalid_schema")
    return value


def decode(data: bytes | str, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> Envelope:
    """Bytes to `Envelope`. Any input either decodes or raises `DecodeError`, nothing else."""
    if len(data) > max_bytes:
        raise DecodeError(f"payload of {len(data)} bytes over the cap", "oversized")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        obj = _decoder.decode(text)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("nesting too deep", "invalid_schema") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"not JSON: {exc}", "decode_error") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"envelope is a {type(obj).__name__}, not an object", "invalid_schema")
    if obj.get("v") != ENVELOPE_VERSION:
        raise DecodeError(f"unsupported envelope version {obj.get('v')!r}", "invalid_schema")
    # Nesting needs an opening bracket per level: text with fewer cannot be too deep.
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(obj)
    task_id = _field(obj, "id", str, None)
    name = _field(obj, "task", str, None)
    if not task_id or not name:
        raise DecodeError("envelope lacks id or task", "invalid_schema")
    headers = _field(obj, "headers", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise DecodeError("headers must map strings to strings", "invalid_schema")
    created_at = float(_field(obj, "created_at", (int, float), 0.0))
    eta = _field(obj, "eta", (int, float), None)
    if eta is not None and not math.isfinite(eta):
        raise DecodeError("eta is not finite", "invalid_schema")
    return Envelope(
        id=task_id,
        task=name,
        args=_field(obj, "args", list, []),
        kwargs=_field(obj, "kwargs", dict, {}),
        priority=_field(obj, "priority", int, 0),
        queue=_field(obj, "queue", str, "default"),
        eta=None if eta is None else float(eta),
        created_at=created_at,
        attempt=_field(obj, "attempt", int, 0),
        retry=_field(obj, "retry", int, None),
        parent=_field(obj, "parent", str, None),
        headers=headers,
        extra=_field(obj, "extra", dict, {}),
    )
