"""Job shells of guests (multi-user instances): one `flux-shell` per job per rank, run
as the job's user through the IMP (SPEC 8.2, docs/multiuser.md).

    IMP exec SHELL --status-fd N JOBID     stdin: {"J": J, "options": {"rank": R}}

The IMP verifies the user's signature on J, becomes the user and execs the shell,
which connects to this broker as that user. Its reports (start, task-exit, exception,
finish) arrive as JSON lines on the status pipe and become the responses to
`job-shell.start`, as the shell server's would. Signals go through `IMP kill`, since
the owner cannot signal the user's processes; SIGKILL there takes the shell's whole
process tree, and the job is then reported finished by that signal.

Without `[exec] imp` in the config, guests' jobs are refused: nothing of a guest ever
runs as the instance owner.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys

import orjson
from flux.core.message import Message

STDERR_KEEP = 4096


class GuestShell:
    __slots__ = ("jobid", "msg", "proc", "finished", "killed", "stderr")

    def __init__(self, jobid: int, msg: Message):
        self.jobid, self.msg = jobid, msg
        self.proc: asyncio.subprocess.Process | None = None
        self.finished = False
        self.killed = 0
        self.stderr = b""


class GuestShells:
    def __init__(self, host):
        self.host = host
        self.broker = host.broker
        self.shells: dict[int, GuestShell] = {}
        conf = self.broker.conf.get("exec", {})
        self.imp = conf.get("imp")
        self.shell = conf.get("job-shell") or os.path.join(os.path.dirname(sys.executable),
                                                           "flux-shell")

    def start(self, msg: Message, p: dict) -> None:
        jobid = p["id"]
        if not self.imp:
            raise OSError(errno.EPERM, "the jobs of users other than the instance owner need "
                                       "an IMP ([exec] imp in the instance config)")
        if not isinstance(p.get("J"), str):
            raise OSError(errno.EPROTO, "job-shell.start of a guest job lacks its signed J")
        if jobid in self.shells:
            raise OSError(errno.EEXIST, f"job {jobid} already has a shell here")
        g = self.shells[jobid] = GuestShell(jobid, msg)
        asyncio.ensure_future(self._run(g, p["J"]))

    async def _run(self, g: GuestShell, J: str) -> None:
        rank = self.broker.rank
        r, w = os.pipe()
        env = dict(os.environ, FLUX_URI=self.broker.attrs["local-uri"])
        try:
            g.proc = await asyncio.create_subprocess_exec(
                self.imp, "exec", self.shell, "--status-fd", str(w), str(g.jobid),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, pass_fds=[w], env=env)
        except OSError as exc:
            os.close(r)
            os.close(w)
            self._end(g, errno.EPERM, f"cannot run the IMP {self.imp}: {exc.strerror}")
            return
        os.close(w)
        g.proc.stdin.write(orjson.dumps({"J": J, "options": {"rank": rank}}))
        g.proc.stdin.close()
        if g.killed:  # killed while it was being spawned
            await self._imp_kill(g, g.killed)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(r, "rb"))
        err = asyncio.ensure_future(self._stderr(g))
        async for line in reader:
            try:
                rep = orjson.loads(line)
                t, data = rep["type"], rep.get("data") or {}
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if t == "finish":
                g.finished = True
            self.host.respond(g.msg, {"id": g.jobid, "rank": rank, "type": t, "data": data})
        await err
        status = await g.proc.wait()
        if g.finished:
            self._end(g)
        elif g.killed == 9:  # SIGKILL took the shell with its tasks
            self.host.respond(g.msg, {"id": g.jobid, "rank": rank, "type": "finish",
                                      "data": {"status": 9}})
            self._end(g)
        else:
            text = g.stderr.decode(errors="replace").strip() or f"exit status {status}"
            self._end(g, errno.EPERM, f"job shell of job {g.jobid} on rank {rank} failed: {text}")

    async def _stderr(self, g: GuestShell) -> None:
        while chunk := await g.proc.stderr.read(65536):
            g.stderr = (g.stderr + chunk)[-STDERR_KEEP:]

    def _end(self, g: GuestShell, errnum: int = 0, text: str = "") -> None:
        self.shells.pop(g.jobid, None)
        if errnum:
            self.broker.log(3, f"job-shell: {text}")
            self.host.respond_error(g.msg, errnum, text)

    def kill(self, jobid: int, signum: int) -> bool:
        """Signal a guest's shell (through the IMP); False if the job is not a guest's."""
        g = self.shells.get(jobid)
        if g is None:
            return False
        g.killed = signum if g.killed != 9 else 9
        if g.proc is not None:
            asyncio.ensure_future(self._imp_kill(g, signum))
        return True

    async def _imp_kill(self, g: GuestShell, signum: int) -> None:
        if g.proc is None or g.proc.returncode is not None:
            return
        k = await asyncio.create_subprocess_exec(
            self.imp, "kill", str(signum), str(g.proc.pid), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _out, err = await k.communicate()
        if k.returncode and g.proc.returncode is None:
            self.broker.log(3, f"job-shell: job {g.jobid}: {err.decode(errors='replace').strip()}")

    async def stop(self) -> None:
        """Broker shutdown: kill every guest's shell and wait for it."""
        shells = [g for g in self.shells.values() if g.proc is not None]
        await asyncio.gather(*(self._imp_kill(g, 9) for g in shells), return_exceptions=True)
        await asyncio.gather(*(g.proc.wait() for g in shells), return_exceptions=True)
