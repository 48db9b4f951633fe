"""ZAP (ZeroMQ RFC 27) handler: which CURVE clients may join this broker's overlay.

CURVE alone proves a client knows the server's public key, which is public. The ZAP
handler is what checks the client's own key: only keys in `allowed` (the
instance's certificate) pass; any other peer is refused, and logged once per
address so a retrying peer cannot flood the log.
"""

from __future__ import annotations

from collections.abc import Callable

import zmq
from zmq.utils import z85

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"flux"


class ZapHandler:
    def __init__(self, ctx: zmq.Context, allowed: frozenset[bytes],
                 log: Callable[[int, str], None]):
        self.allowed = allowed
        self.log = log
        self.refused: dict[str, int] = {}  # peer address -> refusals
        self.accepted = 0
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)

    def handle(self, frames: list[bytes]) -> None:
        """Answer one ZAP request (version, id, domain, address, identity, mechanism, creds)."""
        if len(frames) < 6:
            return  # not a ZAP request; REP cannot answer it meaningfully
        version, reqid, _domain, address, _identity, mechanism = frames[:6]
        addr = address.decode(errors="replace")
        ok, why = False, "unsupported mechanism " + mechanism.decode(errors="replace")
        if mechanism == b"CURVE" and len(frames) >= 7 and len(frames[6]) == 32:
            ok = z85.encode(frames[6]) in self.allowed
            why = "its CURVE key is not the instance's certificate"
        if ok:
            self.accepted += 1
            reply = [version, reqid, b"200", b"OK", b"", b""]
        else:
            n = self.refused.get(addr, 0)
            self.refused[addr] = n + 1
            if n == 0:
                self.log(3, f"overlay: refused connection from {addr}: {why}")
            reply = [version, reqid, b"400", b"key not authorized", b"", b""]
        try:
            self.sock.send_multipart(reply, flags=zmq.DONTWAIT)
        except zmq.ZMQError:
            pass

    def close(self) -> None:
        self.sock.close(linger=0)
