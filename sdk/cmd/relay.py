"""`flux relay PATH`: join stdin/stdout to the broker socket PATH (what the ssh
connector runs on the remote host, SPEC 6.6)."""

from __future__ import annotations

import os
import selectors
import socket
import sys


def relay(path: str, fd_in: int = 0, fd_out: int = 1) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sys.stderr.write(f"flux-relay: {path}: {exc.strerror}\n")
        return 1
    sel = selectors.DefaultSelector()
    sel.register(fd_in, selectors.EVENT_READ, "in")
    sel.register(sock, selectors.EVENT_READ, "sock")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "in":
                    data = os.read(fd_in, 1 << 16)
                    if not data:
                        sock.shutdown(socket.SHUT_WR)
                        sel.unregister(fd_in)
                        continue
                    sock.sendall(data)
                else:
                    data = sock.recv(1 << 16)
                    if not data:
                        return 0
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd_out, view):]
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    from flux.cmd.util import Parser

    p = Parser("flux relay", description="Relay stdin/stdout to a local broker socket")
    p.add_argument("path", metavar="PATH", help="the broker's UNIX socket")
    args = p.parse_args(argv)
    path = args.path[len("local://"):] if args.path.startswith("local://") else args.path
    return relay(path)
