"""A small asyncio connection to a broker, for job shells.

The shell server and the standalone `flux-shell` run inside an asyncio loop and need
only a few things from the broker: send RPCs (KVS commits, lookups), answer requests
(the broker forwards job-shell requests to them) and learn when the broker goes away.
The SDK handle has its own reactor, so this speaks the local-connector framing
directly with `flux.core.message`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable
from typing import Any

from flux.core.errors import FluxError
from flux.core.message import (
    EVENT,
    FLAG_NORESPONSE,
    FLAG_STREAMING,
    NODEID_ANY,
    PREAMBLE_SIZE,
    REQUEST,
    RESPONSE,
    Message,
    ProtocolError,
    decode_stream_body,
    parse_preamble,
)


class _Protocol(asyncio.Protocol):
    def __init__(self, conn: Connection):
        self.conn = conn
        self.buf = bytearray()
        self.need = 0
        self.welcomed = False

    def connection_made(self, transport) -> None:
        self.conn.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.welcomed:
            status = buf[0]
            del buf[:1]
            if status:
                self.conn._lost(FluxError(status, f"broker refused the connection: "
                                                  f"{os.strerror(status)}"))
                self.conn.transport.close()
                return
            self.welcomed = True
            self.conn.ready.set_result(None)
        pos = 0
        n = len(buf)
        deliver = self.conn._deliver
        while True:
            if self.need == 0:
                if n - pos < PREAMBLE_SIZE:
                    break
                self.need = parse_preamble(buf[pos:pos + PREAMBLE_SIZE])
                pos += PREAMBLE_SIZE
            if n - pos < self.need:
                break
            body = bytes(buf[pos:pos + self.need])
            pos += self.need
            self.need = 0
            try:
                msg = decode_stream_body(body)
            except ProtocolError:
                continue
            deliver(msg)
        if pos:
            del buf[:pos]

    def connection_lost(self, exc) -> None:
        self.conn._lost(FluxError(errno.ECONNRESET, "the broker closed the connection"))


class Connection:
    """One connection to the local broker.

    `on_request(msg)` is called for requests the broker forwards to us (services we
    provide); `on_lost(exc)` once when the connection ends.
    """

    def __init__(self, on_request: Callable[[Message], None] | None = None,
                 on_lost: Callable[[BaseException], None] | None = None):
        self.on_request = on_request
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple[asyncio.Future | Callable, bool]] = {}
        self._tag = 0
        self.closed = False
        self.outbuf: list[bytes] = []
        self.out_scheduled = False
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()

    async def open(self, uri: str) -> Connection:
        """Connect to `local://PATH` (the broker's local-uri)."""
        if not uri.startswith("local://"):
            raise FluxError(errno.EINVAL, f"job shells connect to the local broker: "
                                          f"a local:// URI is needed, not {uri!r}")
        loop = asyncio.get_running_loop()
        try:
            await loop.create_unix_connection(lambda: _Protocol(self), uri[len("local://"):])
        except OSError as exc:
            raise FluxError(exc.errno or errno.ECONNREFUSED,
                            f"cannot connect to {uri}: {exc.strerror}") from None
        await self.ready
        return self

    async def adopt(self, sock: socket.socket) -> Connection:
        """Use an already connected socket (the shell server's socketpair end)."""
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: _Protocol(self), sock=sock)
        await self.ready
        return self

    @classmethod
    async def connect(cls, uri: str, **kw) -> Connection:
        return await cls(**kw).open(uri)

    # ----------------------------------------------------------------- send
    def send(self, msg: Message) -> None:
        """Queue a message; everything queued in one loop turn is written at once, so
        the broker reads a burst of reports in one go (fewer wake-ups, and the KVS
        writes they cause share one flush)."""
        if self.closed or self.transport is None:
            raise FluxError(errno.ECONNRESET, "the connection to the broker is closed")
        self.outbuf.append(msg.encode_stream())
        if not self.out_scheduled:
            self.out_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_out)

    def _write_out(self) -> None:
        self.out_scheduled = False
        buf, self.outbuf = self.outbuf, []
        if buf and not self.closed and self.transport is not None:
            self.transport.write(b"".join(buf))

    def rpc(self, topic: str, payload: Any = None, nodeid: int = NODEID_ANY,
            streaming: bool = False, callback: Callable[[Message], None] | None = None
            ) -> asyncio.Future | None:
        """Send a request.

        Without `callback`: returns a future for the (single) response's payload.
        With `callback`: it is called with every response Message (streams end with
        an error response, ENODATA by convention) and None is returned.
        """
        self._tag = (self._tag + 1) & 0x7FFFFFFF or 1
        tag = self._tag
        flags = FLAG_STREAMING if streaming else 0
        fut = None
        if callback is None:
            fut = asyncio.get_running_loop().create_future()
            self.pending[tag] = (fut, streaming)
        else:
            self.pending[tag] = (callback, streaming)
        try:
            self.send(Message(REQUEST, topic, payload, flags=flags, nodeid=nodeid, matchtag=tag))
        except FluxError:
            del self.pending[tag]
            raise
        return fut

    def send_noresponse(self, topic: str, payload: Any = None, nodeid: int = NODEID_ANY) -> None:
        self.send(Message(REQUEST, topic, payload, flags=FLAG_NORESPONSE, nodeid=nodeid))

    def respond(self, msg: Message, payload: Any = None) -> None:
        if msg.noresponse or self.closed:
            return
        self.send(msg.response(payload))

    def respond_error(self, msg: Message, errnum: int, text: str | None = None) -> None:
        if msg.noresponse or self.closed:
            return
        self.send(msg.response(errnum=errnum, errstr=text))

    def close(self) -> None:
        self._write_out()
        if self.transport is not None:
            self.transport.close()

    # -------------------------------------------------------------- receive
    def _deliver(self, msg: Message) -> None:
        t = msg.type
        if t == RESPONSE:
            entry = self.pending.get(msg.matchtag)
            if entry is None:
                return
            target, streaming = entry
            if not streaming or msg.errnum:
                del self.pending[msg.matchtag]
            if isinstance(target, asyncio.Future):
                if target.done():
                    return
                if msg.errnum:
                    target.set_exception(FluxError(msg.errnum, msg.errstr() or None))
                else:
                    try:
                        target.set_result(msg.data())
                    except ProtocolError as exc:
                        target.set_exception(FluxError(errno.EPROTO, str(exc)))
            else:
                target(msg)
        elif t == REQUEST:
            if self.on_request is not None:
                self.on_request(msg)
            elif not msg.noresponse:
                self.respond_error(msg, errno.ENOSYS, f"No service matching {msg.topic}")
        elif t == EVENT:
            pass

    def _lost(self, exc: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(exc)
        pending, self.pending = self.pending, {}
        for target, _streaming in pending.values():
            if isinstance(target, asyncio.Future):
                if not target.done():
                    target.set_exception(exc)
            else:
                m = Message(RESPONSE, "", str(exc), errnum=getattr(exc, "errno", None) or errno.ECONNRESET)
                target(m)
        if self.on_lost is not None:
            self.on_lost(exc)
