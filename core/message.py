"""Flux messages (RFC 3) and their wire encoding.

A message is a request, response, event or control. Inside a broker messages are
passed as objects and never serialized; they are encoded only when they cross a
socket, in flux-core's frame layout (SPEC 6.1) so that the same bytes travel over
the local connector and the overlay.
"""

from __future__ import annotations

import struct
import sys

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

_codec: tuple | None = None


def _json() -> tuple:
    """(dumps -> bytes, loads) for payloads, chosen at first use.

    orjson is several times faster, but importing it costs ~20 ms, which dominates a
    short CLI command.  Brokers, and processes that already loaded it, use it; a
    client that did not keeps the standard library's json."""
    global _codec
    if _codec is None:
        if "orjson" in sys.modules or "flux.core.broker.broker" in sys.modules:
            import orjson

            _codec = (orjson.dumps, orjson.loads)
        else:
            import json

            enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            _codec = (lambda obj: enc.encode(obj).encode(), json.loads)
    return _codec

# message types
REQUEST = 1
RESPONSE = 2
EVENT = 4
CONTROL = 8
TYPE_NAMES = {REQUEST: "request", RESPONSE: "response", EVENT: "event", CONTROL: "control"}

# message flags
FLAG_TOPIC = 0x01
FLAG_PAYLOAD = 0x02
FLAG_NORESPONSE = 0x04
FLAG_ROUTE = 0x08
FLAG_UPSTREAM = 0x10
FLAG_PRIVATE = 0x20
FLAG_STREAMING = 0x40
FLAG_USER1 = 0x80

NODEID_ANY = 0xFFFFFFFF
NODEID_UPSTREAM = 0xFFFFFFFE
USERID_UNKNOWN = 0xFFFFFFFF

ROLE_NONE = 0
ROLE_OWNER = 1
ROLE_USER = 2
ROLE_LOCAL = 4
ROLE_ADMIN = 8
ROLE_ALL = 0xFFFFFFFF

PROTO_MAGIC = 0x8E
PROTO_VERSION = 0x01
_PROTO = struct.Struct(">BBBBIIII")
PROTO_SIZE = _PROTO.size  # 20

# local connector stream framing (flux-core: native-endian magic, BE length)
LOCAL_MAGIC = 0xFFEE0012
_PREAMBLE = struct.Struct("=I")
_U32BE = struct.Struct(">I")
PREAMBLE_SIZE = 8


class ProtocolError(ValueError):
    """Bytes that do not decode to a Flux message."""


def _encode_payload(payload: Any) -> bytes | None:
    if payload is None:
        return None
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode() + b"\0"
    return _json()[0](payload) + b"\0"


def decode_json(raw: bytes) -> Any:
    """Decode a JSON payload (flux-core appends a NUL to string payloads)."""
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return _json()[1](raw)


class Message:
    """One Flux message.

    `payload` holds a JSON-able object (dict/list), a str, raw bytes, or None.
    Payloads decoded from the wire stay raw until `data()` parses them.

    A plain slotted class rather than an attrs class: every CLI command imports this
    module, and importing attrs costs tens of milliseconds of start-up time.
    """

    __slots__ = ("type", "topic", "payload", "flags", "userid", "rolemask", "nodeid",
                 "matchtag", "errnum", "seq", "control_type", "control_status", "route",
                 "_parsed")

    def __init__(self, type: int, topic: str = "", payload: Any = None, flags: int = 0,  # noqa: A002
                 userid: int = USERID_UNKNOWN, rolemask: int = ROLE_NONE,
                 nodeid: int = NODEID_ANY, matchtag: int = 0, errnum: int = 0, seq: int = 0,
                 control_type: int = 0, control_status: int = 0, route: list | None = None):
        self.type = type
        self.topic = topic
        self.payload = payload
        self.flags = flags
        self.userid = userid
        self.rolemask = rolemask
        self.nodeid = nodeid  # requests
        self.matchtag = matchtag  # requests and responses
        self.errnum = errnum  # responses
        self.seq = seq  # events
        self.control_type = control_type  # control
        self.control_status = control_status  # control
        self.route = [] if route is None else route  # route ids (str), oldest first
        self._parsed = None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__[:-1])
        return f"Message({fields})"

    # -- payload access -------------------------------------------------
    def data(self) -> Any:
        """The payload as a JSON object (dict), or None when there is none."""
        p = self.payload
        if p is None or isinstance(p, dict | list):
            return p
        if self._parsed is None:
            try:
                self._parsed = _json()[1](p) if isinstance(p, str) else decode_json(p)
            except ValueError as exc:  # orjson's and json's decode errors are ValueErrors
                raise ProtocolError(f"payload of {self.topic!r} is not valid JSON: {exc}") from exc
        return self._parsed

    def raw(self) -> bytes | None:
        return _encode_payload(self.payload)

    def errstr(self) -> str:
        """Error text of an error response (payload string), or ''."""
        p = self.payload
        if p is None:
            return ""
        if isinstance(p, str):
            return p
        if isinstance(p, bytes | bytearray):
            return bytes(p).rstrip(b"\0").decode(errors="replace")
        return str(p)

    @property
    def streaming(self) -> bool:
        return bool(self.flags & FLAG_STREAMING)

    @property
    def noresponse(self) -> bool:
        return bool(self.flags & FLAG_NORESPONSE)

    @property
    def sender(self) -> str:
        """The route id of the original sender (first hop), used to match disconnects."""
        return self.route[0] if self.route else ""

    # -- constructors ---------------------------------------------------
    @classmethod
    def request(cls, topic: str, payload: Any = None, nodeid: int = NODEID_ANY,
                flags: int = 0, matchtag: int = 0) -> Message:
        return cls(REQUEST, topic, payload, flags=flags, nodeid=nodeid, matchtag=matchtag)

    @classmethod
    def event(cls, topic: str, payload: Any = None, flags: int = 0) -> Message:
        return cls(EVENT, topic, payload, flags=flags)

    def response(self, payload: Any = None, errnum: int = 0, errstr: str | None = None) -> Message:
        """A response to this request: copies topic, matchtag, route and credentials."""
        if errnum:
            payload = errstr if errstr else None
        return Message(RESPONSE, self.topic, payload, flags=self.flags & FLAG_STREAMING,
                       userid=self.userid, rolemask=self.rolemask, matchtag=self.matchtag,
                       errnum=errnum, route=list(self.route))

    def copy(self) -> Message:
        m = Message(self.type, self.topic, self.payload, self.flags, self.userid, self.rolemask,
                    self.nodeid, self.matchtag, self.errnum, self.seq, self.control_type,
                    self.control_status, list(self.route))
        m._parsed = self._parsed
        return m

    # -- wire encoding --------------------------------------------------
    def _aux(self) -> tuple[int, int]:
        t = self.type
        if t == REQUEST:
            return self.nodeid, self.matchtag
        if t == RESPONSE:
            return self.errnum, self.matchtag
        if t == EVENT:
            return self.seq, 0
        return self.control_type, self.control_status

    def encode_frames(self, with_route: bool = True) -> list[bytes]:
        frames: list[bytes] = []
        flags = self.flags & ~(FLAG_TOPIC | FLAG_PAYLOAD | FLAG_ROUTE)
        if with_route and self.type in (REQUEST, RESPONSE):
            flags |= FLAG_ROUTE
            frames.extend(r.encode() for r in self.route)
            frames.append(b"")
        if self.topic and self.type != CONTROL:
            flags |= FLAG_TOPIC
            frames.append(self.topic.encode())
        raw = _encode_payload(self.payload) if self.type != CONTROL else None
        if raw is not None:
            flags |= FLAG_PAYLOAD
            frames.append(raw)
        aux1, aux2 = self._aux()
        frames.append(_PROTO.pack(PROTO_MAGIC, PROTO_VERSION, self.type, flags,
                                  self.userid & 0xFFFFFFFF, self.rolemask & 0xFFFFFFFF,
                                  aux1 & 0xFFFFFFFF, aux2 & 0xFFFFFFFF))
        return frames

    @classmethod
    def decode_frames(cls, frames: list[bytes]) -> Message:
        if not frames:
            raise ProtocolError("empty message")
        mtype, flags, userid, rolemask, aux1, aux2 = parse_proto(frames[-1])
        i = 0
        n = len(frames) - 1
        route: list[str] = []
        if flags & FLAG_ROUTE:
            while True:
                if i >= n:
                    raise ProtocolError("route stack has no delimiter")
                f = frames[i]
                i += 1
                if not f:
                    break
                route.append(bytes(f).decode(errors="replace"))
        topic = ""
        if flags & FLAG_TOPIC:
            if i >= n:
                raise ProtocolError("TOPIC flag set but no topic frame")
            topic = bytes(frames[i]).decode(errors="replace")
            i += 1
        payload = None
        if flags & FLAG_PAYLOAD:
            if i >= n:
                raise ProtocolError("PAYLOAD flag set but no payload frame")
            payload = bytes(frames[i])
            i += 1
        if i != n:
            raise ProtocolError(f"{n - i} unexpected extra frame(s)")
        m = cls(mtype, topic, payload, flags=flags & ~(FLAG_TOPIC | FLAG_PAYLOAD | FLAG_ROUTE),
                userid=userid, rolemask=rolemask, route=route)
        if mtype == REQUEST:
            m.nodeid, m.matchtag = aux1, aux2
        elif mtype == RESPONSE:
            m.errnum, m.matchtag = aux1, aux2
        elif mtype == EVENT:
            m.seq = aux1
        else:
            m.control_type, m.control_status = aux1, aux2
        return m

    # -- local connector stream encoding -------------------------------
    def encode_stream(self) -> bytes:
        body = bytearray()
        for f in self.encode_frames():
            ln = len(f)
            if ln < 255:
                body.append(ln)
            else:
                body.append(255)
                body += _U32BE.pack(ln)
            body += f
        return _PREAMBLE.pack(LOCAL_MAGIC) + _U32BE.pack(len(body)) + body


def parse_proto(proto: bytes) -> tuple[int, int, int, int, int, int]:
    """(type, flags, userid, rolemask, aux1, aux2) from a PROTO frame, checked."""
    if len(proto) != PROTO_SIZE:
        raise ProtocolError(f"PROTO frame is {len(proto)} bytes, expected {PROTO_SIZE}")
    magic, version, mtype, flags, userid, rolemask, aux1, aux2 = _PROTO.unpack(proto)
    if magic != PROTO_MAGIC or version != PROTO_VERSION:
        raise ProtocolError(f"bad PROTO magic/version {magic:#x}/{version}")
    if mtype not in TYPE_NAMES:
        raise ProtocolError(f"unknown message type {mtype}")
    return mtype, flags, userid, rolemask, aux1, aux2


def parse_preamble(pre: bytes) -> int:
    """Return the body length from an 8-byte local-connector preamble."""
    (magic,) = _PREAMBLE.unpack_from(pre, 0)
    if magic != LOCAL_MAGIC:
        raise ProtocolError(f"bad stream magic {magic:#x}")
    return _U32BE.unpack_from(pre, 4)[0]


def split_stream_frames(body: bytes | memoryview) -> list[bytes]:
    """Split a local-connector message body into frames."""
    frames = []
    mv = memoryview(body)
    i = 0
    end = len(mv)
    while i < end:
        ln = mv[i]
        i += 1
        if ln == 255:
            if i + 4 > end:
                raise ProtocolError("truncated frame length")
            ln = _U32BE.unpack_from(mv, i)[0]
            i += 4
        if i + ln > end:
            raise ProtocolError("frame runs past the end of the message")
        frames.append(bytes(mv[i:i + ln]))
        i += ln
    return frames


def decode_stream_body(body: bytes | memoryview) -> Message:
    return Message.decode_frames(split_stream_frames(body))


def unstructure(msg: Message) -> dict:
    """A JSON-able view of a message, for tracing and logs."""
    from flux.core.serialize import converter

    d = converter.unstructure(msg)
    d["type"] = TYPE_NAMES.get(msg.type, msg.type)
    p = msg.payload
    if isinstance(p, bytes | bytearray):
        try:
            d["payload"] = decode_json(bytes(p))
        except Exception:
            d["payload"] = bytes(p).decode(errors="replace")
    return d
