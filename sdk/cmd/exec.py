"""`flux exec [-r RANKS] [-x RANKS] [-l] [-d DIR] [-n] CMD...`: run a command on broker ranks.

Output is forwarded as it arrives; stdin is broadcast to every rank (-n: none);
the exit code is the largest of the commands'.
"""

from __future__ import annotations

import base64
import errno
import os
import sys

from flux.cmd.util import Parser, cli, open_handle
from flux.core.util import idset
from flux.handle import RPC_NORESPONSE, RPC_STREAMING


def _write(stream, data: bytes, label: str | None, partial: dict | None = None,
           key=None, eof: bool = False) -> None:
    """Write output; given `partial` (several ranks, or a label), whole lines only (a
    line split over two output messages is held in `partial[key]` until its end, or
    until EOF), so lines of different ranks never interleave mid-line."""
    if partial is not None:
        data = partial.pop(key, b"") + data
        if not eof and not data.endswith(b"\n"):
            head, sep, tail = data.rpartition(b"\n")
            if tail:
                partial[key] = tail
            data = head + sep
    if label is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(label.encode() + b": " + ln for ln in lines)
        if eof and data and not data.endswith(b"\n"):
            data += b"\n"
    if data:
        stream.buffer.write(data)
        stream.flush()


@cli("flux-exec")
def main(argv: list[str]) -> int:
    p = Parser("flux exec")
    p.add_argument("-r", "--rank", default="all", help="target ranks (idset or 'all')")
    p.add_argument("-x", "--exclude", default="", help="ranks to leave out")
    p.add_argument("-l", "--label-io", action="store_true", help="prefix output with the rank")
    p.add_argument("-d", "--dir", help="working directory")
    p.add_argument("-n", "--noinput", action="store_true", help="no stdin")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("command", nargs="...")
    args = p.parse_args(argv)
    cmd = args.command
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ValueError("no command given")
    h = open_handle("flux-exec")
    size = int(h.attr_get("size"))
    ranks = list(range(size)) if args.rank == "all" else idset.decode(args.rank)
    bad = [r for r in ranks if r >= size]
    if bad:
        raise ValueError(f"rank {bad[0]} is not in this instance of size {size}")
    if args.exclude:
        ex = set(idset.decode(args.exclude))
        ranks = [r for r in ranks if r not in ex]
    if not ranks:
        raise ValueError("no ranks selected")
    env = dict(os.environ)
    cwd = args.dir or os.getcwd()
    state = {"rc": 0}
    label = args.label_io
    partial: dict = {}  # (rank, stream) -> incomplete last line, when labelling

    # stdin is read here and broadcast to every rank's process (-n: none, EOF at once).
    # Without that, a command that reads stdin would wait forever.
    stdin = {"sent": [], "eof": bool(args.noinput), "pids": {}, "watcher": None}

    def write_stdin(rank, pid, data: bytes | None):
        io = {"stream": "stdin", "rank": str(rank)}
        if data:
            io.update(data=base64.b64encode(data).decode(), encoding="base64")
        else:
            io["eof"] = True
        h.rpc("rexec.write", {"pid": pid, "io": io}, nodeid=rank, flags=RPC_NORESPONSE)

    def on_stdin(handle, watcher, fd, revents, arg):
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if data:
            stdin["sent"].append(data)
        else:
            stdin["eof"] = True
            watcher.stop()
        for rank, pid in stdin["pids"].items():
            write_stdin(rank, pid, data)

    def started(rank, pid):
        stdin["pids"][rank] = pid
        for data in stdin["sent"]:
            write_stdin(rank, pid, data)
        if stdin["eof"]:
            write_stdin(rank, pid, None)

    remaining = set(ranks)

    def finished(rank):
        remaining.discard(rank)
        stdin["pids"].pop(rank, None)
        if not remaining and stdin["watcher"] is not None:
            stdin["watcher"].stop()  # nobody left to read it

    def on_response(f, rank):
        try:
            resp = f.get()
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                sys.stderr.write(f"flux-exec: Error: rank {rank}: {exc.strerror}\n")
                state["rc"] = max(state["rc"], 127 if exc.errno == errno.ENOENT else 1)
            finished(rank)
            return
        t = resp.get("type")
        if t == "output":
            io = resp["io"]
            data = io.get("data")
            stream = sys.stdout if io["stream"] == "stdout" else sys.stderr
            raw = b""
            if data:
                raw = base64.b64decode(data) if io.get("encoding") == "base64" else data.encode()
            if raw or ((label or len(ranks) > 1) and io.get("eof")):
                _write(stream, raw, str(rank) if label else None,
                       partial if label or len(ranks) > 1 else None,
                       (rank, io["stream"]), bool(io.get("eof")))
        elif t == "finished":
            st = resp["status"]
            code = (st >> 8) & 0xFF if (st & 0x7F) == 0 else 128 + (st & 0x7F)
            if code and not args.quiet:
                sys.stderr.write(f"flux-exec: Error: rank {rank}: {cmd[0]}: exited with code {code}\n"
                                 if (st & 0x7F) == 0 else
                                 f"flux-exec: Error: rank {rank}: {cmd[0]}: killed by signal {st & 0x7F}\n")
            state["rc"] = max(state["rc"], code)
        elif t == "started":
            started(rank, resp["pid"])
        f.reset()

    payload = {"cmd": {"cmdline": cmd, "env": env, "cwd": cwd, "opts": {}}, "flags": 3}
    for r in ranks:
        h.rpc("rexec.exec", payload, nodeid=r, flags=RPC_STREAMING).then(on_response, r)
    if not stdin["eof"]:
        try:
            os.fstat(0)
        except OSError:  # no stdin at all
            stdin["eof"] = True
    if not stdin["eof"]:
        try:
            stdin["watcher"] = h.fd_watcher_create(0, on_stdin).start()
        except OSError:
            # a regular file or /dev/null cannot be polled: it is finite, read it now
            while data := os.read(0, 65536):
                stdin["sent"].append(data)
            stdin["eof"] = True
    h.reactor_run()
    return state["rc"]
