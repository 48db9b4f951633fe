"""Unit tests of core/message.py: flux-core's byte layout (SPEC 6.1) and round trips."""

from __future__ import annotations

import json
import struct

import pytest
from flux.core.message import (
    CONTROL,
    EVENT,
    FLAG_NORESPONSE,
    FLAG_PAYLOAD,
    FLAG_PRIVATE,
    FLAG_ROUTE,
    FLAG_STREAMING,
    FLAG_TOPIC,
    FLAG_UPSTREAM,
    NODEID_ANY,
    NODEID_UPSTREAM,
    PREAMBLE_SIZE,
    PROTO_SIZE,
    REQUEST,
    RESPONSE,
    ROLE_OWNER,
    USERID_UNKNOWN,
    Message,
    ProtocolError,
    decode_stream_body,
    parse_preamble,
    parse_proto,
    split_stream_frames,
)
from hypothesis import given, settings
from hypothesis import strategies as st

U32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
ROUTE_ID = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4),
    max_leaves=12,
)
PAYLOAD = st.one_of(st.none(), st.binary(max_size=600), st.dictionaries(TEXT, JSON, max_size=5), TEXT)
USER_FLAGS = st.sampled_from([0, FLAG_NORESPONSE, FLAG_STREAMING, FLAG_UPSTREAM, FLAG_PRIVATE,
                              FLAG_STREAMING | FLAG_UPSTREAM])


@st.composite
def messages(draw, mtype=None):
    t = draw(st.sampled_from([REQUEST, RESPONSE, EVENT, CONTROL])) if mtype is None else mtype
    m = Message(t, draw(TEXT) if t != CONTROL else "",
                draw(PAYLOAD) if t != CONTROL else None,
                flags=draw(USER_FLAGS), userid=draw(U32), rolemask=draw(U32))
    if t == REQUEST:
        m.nodeid, m.matchtag = draw(U32), draw(U32)
    elif t == RESPONSE:
        m.errnum, m.matchtag = draw(U32), draw(U32)
    elif t == EVENT:
        m.seq = draw(U32)
    else:
        m.control_type, m.control_status = draw(U32), draw(U32)
    if t in (REQUEST, RESPONSE):
        m.route = draw(st.lists(ROUTE_ID, max_size=4))
    return m


def assert_payload(sent, raw) -> None:
    """What a payload becomes on the wire (flux-core: JSON and strings end with NUL)."""
    if sent is None or isinstance(sent, bytes):
        assert raw == sent
    elif isinstance(sent, str):
        assert raw == sent.encode() + b"\0"
    else:  # JSON: compact, NUL-terminated, the same object back (orjson or json encoder)
        assert raw.endswith(b"\0") and b"\0" not in raw[:-1]
        assert json.loads(raw[:-1]) == sent


def assert_same(a: Message, b: Message) -> None:
    assert (a.type, a.topic, a.flags, a.userid, a.rolemask) == (b.type, b.topic, b.flags, b.userid,
                                                                 b.rolemask)
    assert (a.nodeid, a.matchtag, a.errnum, a.seq) == (b.nodeid, b.matchtag, b.errnum, b.seq)
    assert (a.control_type, a.control_status, a.route) == (b.control_type, b.control_status, b.route)
    assert_payload(a.payload, b.payload)


# ------------------------------------------------------------------ round trips
@settings(max_examples=300, deadline=None)
@given(messages())
def test_frames_round_trip(m):
    assert_same(m, Message.decode_frames(m.encode_frames()))


@settings(max_examples=300, deadline=None)
@given(messages())
def test_stream_round_trip(m):
    wire = m.encode_stream()
    n = parse_preamble(wire[:PREAMBLE_SIZE])
    assert n == len(wire) - PREAMBLE_SIZE  # the length excludes the preamble
    assert_same(m, decode_stream_body(wire[PREAMBLE_SIZE:]))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(TEXT, JSON, max_size=6))
def test_json_payload_decodes_to_the_same_object(obj):
    m = Message.decode_frames(Message.request("t.x", obj).encode_frames())
    assert m.data() == obj


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_stream_frame_lengths_round_trip(frames):
    """Any frame list survives the <255 / 0xFF+u32 length encoding."""
    body = bytearray()
    for f in frames:
        body += bytes([len(f)]) if len(f) < 255 else b"\xff" + struct.pack(">I", len(f))
        body += f
    assert split_stream_frames(bytes(body)) == frames


@given(messages(mtype=EVENT))
def test_events_never_carry_a_route(m):
    m.route = ["x", "y"]
    frames = m.encode_frames()
    flags = frames[-1][3]
    assert not flags & FLAG_ROUTE
    assert Message.decode_frames(frames).route == []


# ------------------------------------------------------------- byte layout
def test_request_bytes_match_flux_core_layout():
    m = Message.request("a.b", {"x": 1}, nodeid=5, matchtag=7, flags=FLAG_STREAMING)
    m.userid, m.rolemask = 1000, ROLE_OWNER
    wire = m.encode_stream()
    # preamble: magic 0xffee0012 as a native (little-endian here) u32, then a BE length
    assert wire[:4] == bytes([0x12, 0x00, 0xEE, 0xFF])
    body = (b"\x00"                                   # route delimiter (no route ids)
            + b"\x03a.b"                              # topic: no NUL
            + b"\x08" + b'{"x":1}\x00'                # JSON payload ends with NUL
            + b"\x14"                                 # PROTO: 20 bytes
            + bytes([0x8E, 0x01, REQUEST, FLAG_TOPIC | FLAG_PAYLOAD | FLAG_ROUTE | FLAG_STREAMING])
            + struct.pack(">IIII", 1000, ROLE_OWNER, 5, 7))
    assert wire[4:8] == struct.pack(">I", len(body))  # excludes the 8-byte preamble
    assert wire[8:] == body


def test_proto_is_20_bytes_big_endian_and_last():
    m = Message(RESPONSE, "kvs.get", None, userid=0x01020304, rolemask=0x05060708,
                errnum=2, matchtag=0x0A0B0C0D, route=["r"])
    frames = m.encode_frames()
    proto = frames[-1]
    assert PROTO_SIZE == 20 and len(proto) == 20
    assert proto[:4] == bytes([0x8E, 0x01, RESPONSE, FLAG_TOPIC | FLAG_ROUTE])
    assert proto[4:] == bytes(range(1, 9)) + b"\x00\x00\x00\x02" + bytes([0x0A, 0x0B, 0x0C, 0x0D])
    assert frames[:-1] == [b"r", b"", b"kvs.get"]


def test_event_and_control_aux_fields():
    ev = Message.event("heartbeat.pulse")
    ev.seq = 42
    proto = ev.encode_frames()[-1]
    assert proto[2] == EVENT and struct.unpack(">II", proto[12:]) == (42, 0)
    c = Message(CONTROL, topic="ignored", payload={"ignored": 1}, control_type=3, control_status=9)
    frames = c.encode_frames()
    assert len(frames) == 1  # control: never a topic or payload
    assert frames[0][3] == 0 and struct.unpack(">II", frames[0][12:]) == (3, 9)


def test_new_message_credentials_and_nodeid_defaults():
    m = Message.request("x.y")
    assert m.userid == USERID_UNKNOWN == 0xFFFFFFFF and m.rolemask == 0
    assert m.nodeid == NODEID_ANY == 0xFFFFFFFF and NODEID_UPSTREAM == 0xFFFFFFFE


@pytest.mark.parametrize("size,header", [
    (0, b"\x00"), (1, b"\x01"), (254, b"\xfe"),
    (255, b"\xff\x00\x00\x00\xff"), (256, b"\xff\x00\x00\x01\x00"), (70000, b"\xff\x00\x01\x11\x70"),
])
def test_frame_length_encoding(size, header):
    payload = b"p" * size
    m = Message(EVENT, "t", payload)
    body = m.encode_stream()[PREAMBLE_SIZE:]
    topic_len = 2  # b"\x01t"
    assert body[topic_len:topic_len + len(header)] == header
    assert body[topic_len + len(header):topic_len + len(header) + size] == payload


def test_string_payload_has_nul_and_errstr_strips_it():
    req = Message.request("x.y")
    req.route = ["c0.1"]
    resp = req.response(errnum=38, errstr="No service matching x.y is registered")
    frames = resp.encode_frames()
    assert frames[-2] == b"No service matching x.y is registered\x00"
    back = Message.decode_frames(frames)
    assert back.errnum == 38 and back.errstr() == "No service matching x.y is registered"


def test_response_copies_topic_matchtag_route_and_streaming():
    req = Message.request("log.dmesg", {}, matchtag=99, flags=FLAG_STREAMING | FLAG_UPSTREAM)
    req.route = ["c0.1", "0"]
    r = req.response({"a": 1})
    assert (r.type, r.topic, r.matchtag, r.route, r.flags) == (RESPONSE, "log.dmesg", 99,
                                                               ["c0.1", "0"], FLAG_STREAMING)
    r.route.pop()
    assert req.route == ["c0.1", "0"]  # the response has its own copy


# ------------------------------------------------------------- bad input
def proto(mtype=REQUEST, flags=0, magic=0x8E, version=1) -> bytes:
    return bytes([magic, version, mtype, flags]) + bytes(16)


@pytest.mark.parametrize("frames,what", [
    ([], "empty message"),
    ([b"\x8e\x01\x01\x00"], "PROTO frame is 4 bytes"),
    ([proto(magic=0x8F)], "bad PROTO magic"),
    ([proto(version=2)], "bad PROTO magic/version"),
    ([proto(mtype=3)], "unknown message type 3"),
    ([b"r1", proto(flags=FLAG_ROUTE)], "route stack has no delimiter"),
    ([proto(flags=FLAG_TOPIC)], "TOPIC flag set but no topic frame"),
    ([b"", proto(flags=FLAG_ROUTE | FLAG_PAYLOAD)], "PAYLOAD flag set but no payload frame"),
    ([b"extra", proto()], "1 unexpected extra frame(s)"),
])
def test_decode_frames_rejects_malformed(frames, what):
    with pytest.raises(ProtocolError, match=what.replace("(", r"\(").replace(")", r"\)")):
        Message.decode_frames(frames)


def test_parse_proto_checks_everything():
    assert parse_proto(proto(mtype=EVENT, flags=FLAG_TOPIC))[:2] == (EVENT, FLAG_TOPIC)
    with pytest.raises(ProtocolError):
        parse_proto(b"\x8e" * 21)


def test_bad_preamble_magic():
    with pytest.raises(ProtocolError, match="bad stream magic"):
        parse_preamble(b"\xff\xee\x00\x12\x00\x00\x00\x01")  # the RFC's byte order, not flux-core's


@pytest.mark.parametrize("body,what", [
    (b"\xff\x00\x00", "truncated frame length"),
    (b"\x05abc", "frame runs past the end"),
    (b"\xff\x00\x00\x01\x00" + b"x" * 10, "frame runs past the end"),
])
def test_split_stream_frames_rejects_truncation(body, what):
    with pytest.raises(ProtocolError, match=what):
        split_stream_frames(body)


@pytest.mark.parametrize("raw", [b"{not json\0", b"\xff\xfe\0", "not json either"])
def test_invalid_json_payload_is_a_protocol_error(raw):
    m = Message.request("attr.get", raw)
    with pytest.raises(ProtocolError, match="attr.get"):
        m.data()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_protocol_error(data):
    """Garbage from a socket is a ProtocolError (a clean drop), never another exception."""
    try:
        decode_stream_body(data)
    except ProtocolError:
        pass
    try:
        Message.decode_frames(split_stream_frames(data) if data else [data])
    except ProtocolError:
        pass
