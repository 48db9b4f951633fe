"""Local connector: clients on a unix socket (`local://PATH`), credentials from SO_PEERCRED.

Each connection gets one status byte (0 = welcome, else an errno), then Flux messages
in flux-core's stream framing. Every request is stamped with the peer's uid and role.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct

from flux.core.errors import FluxError
from flux.core.message import (
    EVENT,
    FLAG_NORESPONSE,
    FLAG_ROUTE,
    FLAG_STREAMING,
    FLAG_TOPIC,
    FLAG_UPSTREAM,
    PREAMBLE_SIZE,
    PROTO_SIZE,
    REQUEST,
    RESPONSE,
    ROLE_LOCAL,
    ROLE_OWNER,
    ROLE_USER,
    USERID_UNKNOWN,
    Message,
    ProtocolError,
    decode_stream_body,
    parse_preamble,
    parse_proto,
    split_stream_frames,
)

log = logging.getLogger("flux.connector")
_CRED = struct.Struct("3i")
# a client that stops reading is dropped once this much output is queued for it
MAX_WRITE_BACKLOG = 512 * 1024 * 1024


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket."""
    return _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))


class LocalClient(asyncio.Protocol):
    def __init__(self, connector: LocalConnector):
        self.connector = connector
        self.broker = connector.broker
        self.id = self.broker.new_client_id()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = 0  # body length of the message being read, 0 = reading preamble
        self.skip = 0  # bytes of an oversized message still to discard
        self.skip_head = bytearray()
        self.skip_tail = bytearray()
        self.skip_len = 0
        self.subscriptions: list[str] = []
        # (service, nodeid, UPSTREAM flag) of every request sent: where to send
        # `<service>.disconnect` when this client goes away
        self.used_services: set[tuple[str, int, int]] = set()
        self.provides: set[str] = set()  # services this client registered (service.add)
        # requests sent to those services and not answered yet: (route, matchtag) -> request
        self.answering: dict[tuple, Message] = {}
        self.userid = USERID_UNKNOWN
        self.rolemask = 0
        self.pid = 0
        self.closed = False

    # -- connection ---------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        try:
            self.pid, self.userid, _gid = peer_credentials(sock)
        except OSError:
            transport.write(bytes([errno.EPERM]))
            transport.close()
            return
        role = self.connector.role_for(self.userid)
        if role == 0:
            transport.write(bytes([errno.EPERM]))
            transport.close()
            self.closed = True
            self.broker.log(5, f"refused connection from uid {self.userid}: guests are not allowed")
            return
        if not role & ROLE_OWNER and not self.connector.count(self.userid, 1):
            transport.write(bytes([errno.EAGAIN]))
            transport.close()
            self.closed = True
            self.broker.log(4, f"refused connection from uid {self.userid}: it already has "
                               f"{self.connector.max_user_connections} connections "
                               f"(access.max-user-connections)")
            return
        self.rolemask = role | ROLE_LOCAL
        transport.write(b"\0")
        self.broker.client_connected(self)

    def connection_lost(self, exc) -> None:
        if not self.closed:
            self.closed = True
            if self.rolemask and not self.rolemask & ROLE_OWNER:
                self.connector.count(self.userid, -1)
            self.broker.client_disconnected(self)

    def send(self, msg: Message) -> None:
        t = self.transport
        if t is None or self.closed:
            return
        t.write(msg.encode_stream())
        if t.get_write_buffer_size() > MAX_WRITE_BACKLOG:
            self.broker.log(3, f"client {self.id} (pid {self.pid}) is not reading its messages; dropping it")
            t.abort()

    def subscribed(self, topic: str) -> bool:
        for p in self.subscriptions:
            if topic.startswith(p):
                return True
        return False

    # -- input --------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.skip:
            data = self._discard(data)
            if not data:
                return
        buf = self.buf
        buf += data
        maxsize = self.connector.max_message_size
        pos = 0
        n = len(buf)
        while True:
            if self.need == 0:
                if n - pos < PREAMBLE_SIZE:
                    break
                try:
                    need = parse_preamble(buf[pos:pos + PREAMBLE_SIZE])
                except ProtocolError as exc:
                    self._drop(f"protocol error: {exc}")
                    return
                pos += PREAMBLE_SIZE
                if need > maxsize:
                    self.skip = need
                    self.skip_len = need
                    self.skip_head = bytearray()
                    self.skip_tail = bytearray()
                    rest = bytes(buf[pos:])
                    self.buf = bytearray()
                    rest = self._discard(rest)
                    if rest:
                        self.data_received(rest)
                    return
                self.need = need
            if n - pos < self.need:
                break
            body = bytes(buf[pos:pos + self.need])
            pos += self.need
            self.need = 0
            self._handle_body(body)
            if self.closed:
                return
        if pos:
            del buf[:pos]

    def _discard(self, data: bytes) -> bytes:
        """Consume an oversized message, keeping its head and its PROTO frame to answer it."""
        take = min(self.skip, len(data))
        chunk = data[:take]
        if len(self.skip_head) < 4096:
            self.skip_head += chunk[:4096 - len(self.skip_head)]
        self.skip_tail = (self.skip_tail + chunk)[-PROTO_SIZE:]
        self.skip -= take
        if self.skip == 0:
            self._reject_oversized()
        return data[take:]

    def _reject_oversized(self) -> None:
        limit = self.connector.max_message_size
        text = (f"message of {self.skip_len} bytes exceeds the broker's limit of {limit} bytes "
                f"(attribute broker.max-message-size)")
        self.broker.log(4, f"client {self.id} (pid {self.pid}): {text}")
        try:
            # only the PROTO frame (the tail) and the frames before the payload (the head)
            # were kept: enough to answer a request with its topic and matchtag
            mtype, flags, _uid, _role, _aux1, matchtag = parse_proto(bytes(self.skip_tail))
        except ProtocolError:
            self._drop(text)
            return
        if mtype != REQUEST or flags & FLAG_NORESPONSE:
            return
        head = bytes(self.skip_head)
        frames = []
        i = 0
        while i < len(head):
            ln = head[i]
            i += 1
            if ln == 255:
                if i + 4 > len(head):
                    break
                ln = struct.unpack_from(">I", head, i)[0]
                i += 4
            if i + ln > len(head):
                break
            frames.append(head[i:i + ln])
            i += ln
        topic = ""
        if flags & FLAG_TOPIC:
            # route frames end with an empty delimiter, then comes the topic
            idx = (frames.index(b"") + 1 if b"" in frames else len(frames)) \
                if flags & FLAG_ROUTE else 0
            if idx < len(frames):
                topic = frames[idx].decode(errors="replace")
        self.send(Message(RESPONSE, topic, text, matchtag=matchtag, errnum=errno.EFBIG))

    def _handle_body(self, body: bytes) -> None:
        try:
            msg = decode_stream_body(body)
        except ProtocolError as exc:
            # frames were delimited correctly, so the stream is still in sync: answer if we can
            self.broker.log(4, f"client {self.id} (pid {self.pid}) sent a malformed message: {exc}")
            self._answer_malformed(body, str(exc))
            return
        self.handle_message(msg)

    def _answer_malformed(self, body: bytes, text: str) -> None:
        try:
            frames = split_stream_frames(body)
            proto = frames[-1] if frames else b""
            if len(proto) == PROTO_SIZE and proto[0] == 0x8E and proto[2] == REQUEST:
                tag = struct.unpack_from(">I", proto, 16)[0]
                self.send(Message(RESPONSE, "", f"malformed message: {text}", matchtag=tag,
                                  errnum=errno.EPROTO))
        except ProtocolError:
            pass

    def _drop(self, why: str) -> None:
        self.broker.log(4, f"dropping client {self.id} (pid {self.pid}): {why}")
        if self.transport is not None:
            self.transport.abort()

    def handle_message(self, msg: Message) -> None:
        # the owner may act with any credentials (SPEC 6.3); others get their own stamped
        if not (self.rolemask & ROLE_OWNER) or msg.userid == USERID_UNKNOWN:
            msg.userid = self.userid
            msg.rolemask = self.rolemask
        else:
            msg.rolemask |= ROLE_LOCAL
        t = msg.type
        if t == REQUEST:
            msg.route = [self.id]
            topic = msg.topic
            i = topic.find(".")
            self.used_services.add((topic[:i] if i > 0 else topic, msg.nodeid,
                                    msg.flags & FLAG_UPSTREAM))
            self.broker.handle_request(msg)
        elif t == RESPONSE:
            # answer from a client-registered service: route already leads back.
            # A client that offers no service has nothing to answer: drop, so it
            # cannot inject responses into other clients' RPCs.
            if not self.provides:
                self.broker.log(5, f"client {self.id} (pid {self.pid}) sent a response "
                                   f"{msg.topic!r} but registered no service; dropped")
                return
            if self.answering and (msg.errnum or not msg.flags & FLAG_STREAMING):
                self.answering.pop((tuple(msg.route), msg.matchtag), None)
            self.broker.send_response(msg)
        elif t == EVENT:
            # clients publish with event.publish; a raw event is refused
            self.broker.log(5, f"client {self.id} sent a raw event {msg.topic!r}; use event.publish")
        # control messages from clients are ignored


class LocalConnector:
    def __init__(self, broker):
        self.broker = broker
        self.server: asyncio.AbstractServer | None = None
        self.path = ""
        self.max_message_size = broker.attrs.get_int("broker.max-message-size", 256 << 20)
        # a guest cannot exhaust the broker's descriptors: connections per guest uid
        self.max_user_connections = broker.conf.get("access", {}).get("max-user-connections",
                                                                       256)
        self.connections: dict[int, int] = {}

    def count(self, uid: int, delta: int) -> bool:
        """Count a guest's connection in (1) or out (-1); False if over the limit."""
        n = self.connections.get(uid, 0) + delta
        if delta > 0 and n > self.max_user_connections:
            return False
        if n:
            self.connections[uid] = n
        else:
            self.connections.pop(uid, None)
        return True

    def role_for(self, uid: int) -> int:
        if uid == self.broker.owner:
            return ROLE_OWNER
        if uid == 0 and self.broker.conf.get("access", {}).get("allow-root-owner"):
            return ROLE_OWNER
        if self.broker.conf.get("access", {}).get("allow-guest-user"):
            return ROLE_USER
        return 0

    async def start(self) -> None:
        a = self.broker.attrs
        rundir = a["rundir"]
        uri = a.get("local-uri") or f"local://{rundir}/local-{self.broker.rank}"
        if not uri.startswith("local://"):
            raise FluxError(errno.EINVAL, f"attribute local-uri must be local://PATH, not {uri}")
        self.path = uri[len("local://"):]
        if os.path.exists(self.path):
            os.unlink(self.path)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_unix_server(lambda: LocalClient(self), self.path)
        guests = self.broker.conf.get("access", {}).get("allow-guest-user")
        os.chmod(self.path, 0o777 if guests else 0o700)
        if guests:  # guests must reach the socket; who may do what is checked per request
            d = os.path.dirname(self.path)
            st = os.stat(d)
            if st.st_uid == os.getuid() and st.st_mode & 0o011 != 0o011:
                os.chmod(d, st.st_mode | 0o011)
        a.set("local-uri", uri, 1)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for c in list(self.broker.clients.values()):
            if c.transport is not None:
                c.transport.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
