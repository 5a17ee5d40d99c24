"""The wire envelope: round trips, strict decoding, caps, and a fuzz of the decoder."""

from __future__ import annotations

import contextlib
import enum
import json
import pickle
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtasks.exc import DecodeError, PayloadTooLargeError, SerializationError
from qtasks.schemas.envelope import Envelope, decode, encode, encodes_surely
from qtasks.schemas.ids import new_task_id


def test_round_trip() -> None:
    env = Envelope(
        id="a",
        task="t",
        args=[1, "x"],
        kwargs={"k": [1.5]},
        priority=-2,
        queue="q",
        eta=12.5,
        created_at=1.0,
        attempt=2,
        retry=1,
        parent="p",
        headers={"traceparent": "00-x"},
        extra={"e": True},
    )
    assert decode(encode(env)) == env


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "decode_error"),
        (b'{"v": 1, "id": "a", "task": ', "decode_error"),
        (b"[]", "invalid_schema"),
        (b'{"v": 2, "id": "a", "task": "t"}', "invalid_schema"),
        (b'{"v": 1, "id": 5, "task": "t"}', "invalid_schema"),
        (b'{"v": 1, "id": "a", "task": "t", "priority": "high"}', "invalid_schema"),
        (b'{"v": 1, "id": "a", "task": "t", "args": [NaN]}', "decode_error"),
        (b'{"v": 1, "id": "a", "task": "t", "headers": {"x": 1}}', "invalid_schema"),
        (pickle.dumps({"v": 1}), "decode_error"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_schema"),
    ],
)
def test_malformed_input_is_a_typed_error(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(payload)
    assert info.value.reason == reason


def test_caps() -> None:
    with pytest.raises(PayloadTooLargeError, match="over the 2048-byte cap"):
        encode(Envelope(id="a", task="t", args=["x" * 4096]), max_bytes=2048)
    with pytest.raises(DecodeError) as info:
        decode(b"x" * 4096, max_bytes=2048)
    assert info.value.reason == "oversized"


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), lambda: 1])
def test_unserialisable_arguments(value: object) -> None:
    with pytest.raises(SerializationError, match="not JSON-serialisable"):
        encode(Envelope(id="a", task="t", args=[value]))


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


_finite = st.floats(allow_nan=False, allow_infinity=False)


def _envelopes(**fields: Any) -> st.SearchStrategy[Envelope]:
    """Envelopes of any valid field values, with `fields`' strategies in place of those given."""
    default: dict[str, Any] = {
        "id": st.text(min_size=1),
        "task": st.text(min_size=1),
        "args": st.lists(_json, max_size=3),
        "kwargs": st.dictionaries(st.text(), _json, max_size=3),
        "priority": st.integers(),
        "queue": st.text(min_size=1),
        "eta": st.none() | _finite,
        "created_at": _finite,
        "attempt": st.integers(min_value=0),
        "retry": st.none() | st.integers(),
        "parent": st.none() | st.text(),
        "headers": st.dictionaries(st.text(), st.text(), max_size=3),
        "extra": st.dictionaries(st.text(), _json, max_size=3),
    }
    return st.builds(Envelope, **{**default, **fields})


@settings(max_examples=300, deadline=None)
@given(_envelopes())
def test_encode_writes_the_same_json_object_as_the_generic_encoder(env: Envelope) -> None:
    # The fixed fields are formatted directly, not through json: the object must not differ.
    assert json.loads(encode(env)) == json.loads(json.dumps(env.to_dict()))
    assert decode(encode(env)) == env


class Level(enum.IntEnum):
    HIGH = 2


def test_fields_not_of_their_plain_type_take_the_encoder() -> None:
    # Formatted directly, a bool would be `True` (no JSON); the encoder writes `true`.
    assert json.loads(encode(Envelope(id="a", task="t", priority=True)))["priority"] is True
    assert json.loads(encode(Envelope(id="a", task="t", priority=Level.HIGH)))["priority"] == 2
    for bad in (
        Envelope(id="a", task="t", eta=float("nan")),
        Envelope(id="a", task="t", created_at=float("inf")),
    ):
        with pytest.raises(SerializationError, match="not JSON-serialisable"):
            encode(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "id",
                "task",
                "args",
                "kwargs",
                "priority",
                "eta",
                "queue",
                "headers",
                "attempt",
                "retry",
                "extra",
            ]
        ),
        json_values,
    )
)
def test_fuzz_json_objects_decode_or_raise_decode_error(obj: dict[str, object]) -> None:
    try:
        env = decode(json.dumps(obj).encode())
    except DecodeError:
        return
    assert isinstance(env.id, str) and isinstance(env.task, str)


def test_new_task_ids_are_version_4_uuids_like_uuid4s() -> None:
    made = [new_task_id() for _ in range(2000)]
    for value, text in made:
        assert isinstance(value, uuid.UUID)
        assert value.version == 4 and value.variant == uuid.RFC_4122
        assert str(value) == text == str(uuid.UUID(text))
        assert uuid.UUID(text) == value and hash(uuid.UUID(text)) == hash(value)
        assert pickle.loads(pickle.dumps(value)) == value
    assert len({text for _, text in made}) == len(made)
    # Every random bit is used: across 2000 ids each of the 122 free bits takes both values.
    free = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
    ones = zeros = 0
    for value, _ in made:
        ones |= value.int & free
        zeros |= ~value.int & free
    assert ones == zeros == free


@settings(max_examples=500, deadline=None)
@given(
    _envelopes(
        args=st.just([]) | st.lists(_json, max_size=2),
        kwargs=st.just({}) | st.dictionaries(st.text(), _json, max_size=2),
        headers=st.just({}) | st.dictionaries(st.text(), st.text(), max_size=1),
        extra=st.just({}),
        eta=st.none() | st.floats(),
        created_at=st.floats(),
        attempt=st.integers(),
    ),
    st.integers(min_value=0, max_value=2000),
)
def test_an_envelope_that_encodes_surely_encodes_within_the_cap(env: Envelope, cap: int) -> None:
    # What a bulk enqueue leaves to be encoded after its first writes must never fail there.
    if encodes_surely(env, cap):
        assert len(encode(env, cap)) <= cap


def test_what_could_fail_to_encode_is_not_left_for_later() -> None:
    plain = Envelope(id="a" * 36, task="t", created_at=1.5)
    assert encodes_surely(plain, 1 << 20)
    n = 10**15 - 1
    widest = Envelope(
        id="\x01" * 36,
        task="\x01" * 40,
        queue="\x01" * 9,
        parent="\x01" * 36,
        priority=-n,
        attempt=n,
        retry=-n,
        created_at=-1.2345678901234567e-300,
        eta=-1.2345678901234567e-300,
    )
    cap = 6 * (36 + 40 + 9 + 36) + 256
    assert encodes_surely(widest, cap) and len(encode(widest, cap)) <= cap
    assert not encodes_surely(widest, cap - 1)
    for unsure in (
        Envelope(id="a", task="t", args=[1]),
        Envelope(id="a", task="t", kwargs={"k": 1}),
        Envelope(id="a", task="t", headers={"h": "v"}),
        Envelope(id="a", task="t", extra={"e": 1}),
        Envelope(id="a", task="t\ud800"),  # a lone surrogate: UTF-8 refuses it
        Envelope(id="a", task="t", queue="é"),
        Envelope(id="a", task="t", priority=True),
        Envelope(id="a", task="t", priority=10**15),
        Envelope(id="a", task="t", retry=10**20),
        Envelope(id="a", task="t", created_at=float("nan")),
    ):
        assert not encodes_surely(unsure, 1 << 20), unsure
