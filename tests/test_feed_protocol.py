"""Property tests of the feed protocol: validators never crash, encodings round-trip."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.feed import protocol as p
from app.feed.protocol import CurveUpdate, ProtocolError, Snapshot, Tick

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5)
    ),
    max_leaves=25,
)
type_names = st.sampled_from([*p.CLIENT_TYPES, *p.SERVER_TYPES, "", "x", "TICK"])
field_names = st.sampled_from(
    [
        "type",
        "id",
        "token",
        "protocol",
        "client",
        "patterns",
        "streams",
        "stream",
        "seq",
        "instrument",
        "bid",
        "ask",
        "last",
        "size",
        "ts",
        "kind",
        "product",
        "start",
        "prices",
        "full",
        "settle",
        "quotes",
        "curve",
        "settles",
        "session",
        "mode",
        "heartbeat",
        "server_time",
        "instruments",
        "code",
        "message",
    ]
)
# messages that look nearly right: a real type and real field names with arbitrary values
near_messages = st.builds(
    lambda t, fields: {**fields, "type": t},
    type_names,
    st.dictionaries(field_names, json_value, max_size=12),
)
any_message = st.one_of(json_value, near_messages)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)


def _parse_all(obj: Any) -> None:
    for parse in (p.parse_client_message, p.parse_server_message):
        try:
            parse(obj)
        except ProtocolError as exc:
            assert exc.code in (p.E_BAD_MESSAGE, p.E_UNKNOWN_TYPE, p.E_BAD_FRAME)


@FUZZ
@given(st.binary(max_size=300))
def test_decode_frame_bytes_never_crash(data: bytes) -> None:
    try:
        objs = p.decode_frame(data)
    except ProtocolError as exc:
        assert exc.code == p.E_BAD_FRAME
        return
    for obj in objs:
        _parse_all(obj)


@FUZZ
@given(st.text(max_size=300))
def test_decode_frame_text_never_crash(data: str) -> None:
    try:
        objs = p.decode_frame(data)
    except ProtocolError as exc:
        assert exc.code == p.E_BAD_FRAME
        return
    assert isinstance(objs, list)


@FUZZ
@given(st.lists(any_message, max_size=6) | any_message)
def test_validators_never_raise_anything_but_protocol_error(value: Any) -> None:
    text = _dumps(value)
    try:
        objs = p.decode_frame(text, max_bytes=10**7)
    except ProtocolError as exc:
        assert exc.code == p.E_BAD_FRAME
        assert "NaN" in text or "Infinity" in text or not isinstance(value, list | dict)
        return
    for obj in objs:
        _parse_all(obj)


@FUZZ
@given(near_messages)
def test_parsed_messages_hold_only_finite_numbers(msg: dict[str, Any]) -> None:
    try:
        out = p.parse_server_message(msg)
    except ProtocolError:
        return
    if isinstance(out, Tick):
        for v in (out.bid, out.ask, out.last, out.size):
            assert v is None or math.isfinite(v)
        assert out.seq >= 1 and out.ts >= 0
    elif isinstance(out, CurveUpdate):
        assert out.prices and all(math.isfinite(x) for x in out.prices)


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        "NaN",
        "[Infinity]",
        '[{"type":"tick","bid":-Infinity}]',
        "1e999999",
        "9" * 5000,
        "",
        "\x00",
        '"hello"',
        "null",
        "true",
        "x" * (p.MAX_CLIENT_FRAME + 1),
        b"\xc3\x28",
        b"[\xff]",
    ],
)
def test_hostile_frames_are_bad_frames(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode_frame(frame)
    assert info.value.code == p.E_BAD_FRAME


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "hello", "protocol": True},
        {"type": "hello", "protocol": 10**100, "token": 5},
        {"type": "subscribe", "patterns": []},
        {"type": "subscribe", "patterns": ["a" * 65]},
        {"type": "subscribe", "patterns": ["ok"] * 257},
        {"type": "subscribe", "patterns": [None]},
        {"type": "resync", "streams": ["lower"]},
        {"type": "subscribe", "id": "x" * 65, "patterns": ["*"]},
        {"type": 5},
        {"type": "nope"},
        [],
        "string",
    ],
)
def test_bad_client_messages(msg: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_client_message(msg)
    assert info.value.code in (p.E_BAD_MESSAGE, p.E_UNKNOWN_TYPE)


def test_bad_message_keeps_ref() -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_client_message({"type": "subscribe", "id": "abc", "patterns": 3})
    assert info.value.ref == "abc" and info.value.to_message()["ref"] == "abc"


# ------------------------------------------------------------------ round trips

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
opt_price = st.none() | finite
streams = st.from_regex(r"\A[A-Z0-9][A-Z0-9-]{0,31}\Z", fullmatch=True)
months = st.builds(
    lambda y, m: f"{y:04d}-{m:02d}",
    st.integers(1900, 2200),
    st.integers(1, 12),
)
dates = st.builds(
    lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
    st.integers(1900, 2200),
    st.integers(1, 12),
    st.integers(1, 28),
)
ticks = st.builds(
    Tick,
    instrument=st.text(min_size=1, max_size=64),
    bid=opt_price,
    ask=opt_price,
    last=opt_price,
    size=finite,
    ts=st.integers(0, 2**63),
    kind=st.sampled_from(["trade", "settle"]),
    stream=streams,
    seq=st.integers(1, 2**53),
)
curves = st.builds(
    CurveUpdate,
    product=streams,
    start=months,
    prices=st.lists(finite, min_size=1, max_size=60),
    ts=st.integers(0, 2**63),
    full=st.booleans(),
    settle=st.none() | dates,
    seq=st.integers(1, 2**53),
)


def _wire(messages: list[dict[str, Any]]) -> list[Any]:
    return p.decode_frame(p.encode_frame(messages), max_bytes=p.MAX_SERVER_FRAME)


@FUZZ
@given(st.lists(ticks, min_size=1, max_size=20))
def test_tick_round_trip(items: list[Tick]) -> None:
    back = [p.parse_server_message(o) for o in _wire([t.to_message() for t in items])]
    assert back == items


@FUZZ
@given(curves)
def test_curve_round_trip(cu: CurveUpdate) -> None:
    (back,) = [p.parse_server_message(o) for o in _wire([cu.to_message()])]
    assert back == cu


@FUZZ
@given(
    streams,
    st.integers(0, 2**53),
    st.lists(ticks, max_size=10),
    st.none() | curves,
    st.dictionaries(st.text(max_size=20), finite, max_size=10),
)
def test_snapshot_round_trip(
    stream: str,
    seq: int,
    quotes: list[Tick],
    curve: CurveUpdate | None,
    settles: dict[str, float],
) -> None:
    wire_curve = None
    if curve is not None:
        curve.full, curve.seq, curve.product = True, 0, stream
        m = curve.to_message()
        wire_curve = {k: m[k] for k in ("product", "start", "prices", "ts", "full", "settle")}
    msg = {
        "type": "snapshot",
        "stream": stream,
        "seq": seq,
        "quotes": [
            {
                k: t.to_message()[k]
                for k in ("instrument", "bid", "ask", "last", "size", "ts", "kind")
            }
            for t in quotes
        ],
        "curve": wire_curve,
        "settles": settles,
    }
    (back,) = [p.parse_server_message(o) for o in _wire([msg])]
    assert isinstance(back, Snapshot)
    assert back.stream == stream and back.seq == seq and back.settles == settles
    assert [(q.instrument, q.bid, q.ask, q.last, q.size, q.ts, q.kind) for q in back.quotes] == [
        (q.instrument, q.bid, q.ask, q.last, q.size, q.ts, q.kind) for q in quotes
    ]
    assert back.curve == curve


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError):
        p.encode_frame([{"type": "tick", "bid": math.nan}])


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "tick", "stream": "A", "seq": 1, "instrument": "A:1", "bid": 10**400, "ts": 1},
        {
            "type": "curve",
            "product": "A",
            "start": "2030-01",
            "prices": [10**400],
            "ts": 1,
            "seq": 1,
        },
        {"type": "snapshot", "stream": "A", "seq": 1, "settles": {"x": 10**400}},
    ],
)
def test_huge_integers_are_protocol_errors(msg: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        p.parse_server_message(msg)


def test_vol_update_round_trip_and_bad_smiles() -> None:
    from app.feed.protocol import VolSmile, VolUpdate

    vu = VolUpdate(
        "NG-TTF",
        123,
        [VolSmile("2027-01", "2026-12-24", 36.5, (30.0, 36.5, 44.0), (0.62, 0.6, 0.61))],
        "test",
        4,
    )
    [back] = p.decode_frame(p.encode_frame([vu.to_message()]))
    parsed = p.parse_server_message(back)
    assert parsed == vu
    bad = vu.to_message()
    bad["smiles"][0]["vols"] = [0.6, -0.1, 0.6]
    with pytest.raises(ProtocolError):
        p.parse_server_message(bad)
    bad["smiles"][0]["vols"] = [0.6, 0.6]  # does not pair with the strikes
    with pytest.raises(ProtocolError):
        p.parse_server_message(bad)
