"""Remote execution (RFC 42 subset): run a process on this broker's node for a client.

`rexec.exec` streams `started`, `output` and `finished` responses, then ENODATA.
`rexec.write` feeds stdin, `rexec.kill` signals, `rexec.list` lists. Owner only.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os

from flux.core.broker.service import NOREPLY, Service, method, payload_of, require
from flux.core.errors import FluxError


def io_object(stream: str, rank: int, data: bytes | None = None, eof: bool = False) -> dict:
    io: dict = {"stream": stream, "rank": str(rank)}
    if data:
        try:
            io["data"] = data.decode()
        except UnicodeDecodeError:
            io["data"] = base64.b64encode(data).decode()
            io["encoding"] = "base64"
    if eof:
        io["eof"] = True
    return io


class RexecService(Service):
    name = "rexec"

    def __init__(self, broker):
        super().__init__(broker)
        self.procs: dict[int, tuple[asyncio.subprocess.Process, object]] = {}

    @method("exec", streaming=True, owner_only=True)
    async def exec_(self, msg):
        p = payload_of(msg)
        cmd = require(p, "cmd", dict, msg.topic)
        argv = require(cmd, "cmdline", list, msg.topic)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise FluxError(errno.EINVAL, "rexec.exec: cmdline must be a non-empty list of strings")
        env = cmd.get("env")
        if env is not None and not isinstance(env, dict):
            raise FluxError(errno.EPROTO, "rexec.exec: env must be an object")
        cwd = cmd.get("cwd") or None
        env = os.environ if env is None else env
        env = {str(k): str(v) for k, v in env.items()}
        env["FLUX_URI"] = self.broker.attrs["local-uri"]  # the command talks to this rank
        rank = self.broker.rank
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise FluxError(exc.errno or errno.ENOENT, f"{argv[0]}: {exc.strerror}") from None
        self.procs[proc.pid] = (proc, msg)
        self.respond(msg, {"type": "started", "pid": proc.pid})

        async def pump(reader, stream):
            while True:
                data = await reader.read(65536)
                if not data:
                    self.respond(msg, {"type": "output", "pid": proc.pid,
                                       "io": io_object(stream, rank, eof=True)})
                    return
                self.respond(msg, {"type": "output", "pid": proc.pid,
                                   "io": io_object(stream, rank, data)})

        await asyncio.gather(pump(proc.stdout, "stdout"), pump(proc.stderr, "stderr"))
        rc = await proc.wait()
        self.procs.pop(proc.pid, None)
        status = (rc << 8) if rc >= 0 else (-rc & 0x7F)  # wait(2) status encoding
        self.respond(msg, {"type": "finished", "pid": proc.pid, "status": status})
        self.respond_error(msg, errno.ENODATA)
        return NOREPLY

    def _find(self, msg, p):
        pid = p.get("pid")
        if not isinstance(pid, int) or pid not in self.procs:
            raise FluxError(errno.ESRCH, f"rexec: no process with pid {pid}")
        return self.procs[pid][0]

    @method("write", owner_only=True)
    def write(self, msg):
        p = payload_of(msg)
        proc = self._find(msg, p)
        io = require(p, "io", dict, msg.topic)
        data = io.get("data")
        if data:
            raw = base64.b64decode(data) if io.get("encoding") == "base64" else data.encode()
            proc.stdin.write(raw)
        if io.get("eof"):
            proc.stdin.close()
        return {}

    @method("kill", owner_only=True)
    def kill(self, msg):
        p = payload_of(msg)
        proc = self._find(msg, p)
        signum = require(p, "signum", int, msg.topic)
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass
        except (OSError, ValueError) as exc:
            raise FluxError(errno.EINVAL, f"rexec.kill: {exc}") from None
        return {}

    @method("list")
    def list_(self, msg):
        return {"rank": self.broker.rank,
                "procs": [{"pid": pid, "cmd": []} for pid in self.procs]}

    def disconnect(self, sender: str) -> None:
        for pid, (proc, m) in list(self.procs.items()):
            if m.sender == sender and proc.returncode is None:
                try:
                    os.killpg(pid, 9)
                except OSError:
                    pass

    async def stop(self) -> None:
        for pid, (proc, _m) in list(self.procs.items()):
            if proc.returncode is None:
                try:
                    os.killpg(pid, 9)
                except OSError:
                    pass
