"""The shell server: one long-lived process per broker rank hosting many job shells.

Starting a Python interpreter costs ~0.1 s; a job of `true` costs ~1 ms. So the
broker's `job-shell` service starts this process on first need (`python -m
flux.shell.server --fd N ...`, connected by a socketpair), and forwards it the
`job-shell.*` requests of its rank. Each `job-shell.start` runs a JobShell in this
process' asyncio loop: imports and plugins are warm, only the tasks are new
processes.

Requests (all from the local broker, owner only):
- `job-shell.start {id, userid, jobspec, R}` (streaming): responses
  `{id, rank, type, data}` with type `start`, `task-exit` (first local task exit
  while others still run), `exception` ({type, severity, note}) and, last,
  `finish` ({status, task}); an error response if the shell cannot be created.
- `job-shell.kill {id, signum}`: signal the job's local tasks.
- `job-shell.stdin {id, ranks?, data?, encoding?, eof?}` and
  `<uid>-shell-<f58plain>.stdin` (the shell's own service, RFC 24 data object):
  feed task stdin.
- `job-shell.list`: the jobs running here.
When the broker connection closes, every task is killed and the server exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import errno
import os
import signal
import socket
import sys

from flux.core.message import Message
from flux.shell.conn import Connection
from flux.shell.plugin import PluginStack
from flux.shell.shell import JobShell
from flux.shell.task import Spawner


class ServerReporter:
    """Carries a hosted shell's reports to exec as responses to its start request."""

    __slots__ = ("server", "msg", "jobid")
    handover = True  # exec commits the last output events with the finish

    def __init__(self, server: ShellServer, msg: Message, jobid: int):
        self.server, self.msg, self.jobid = server, msg, jobid

    def _send(self, type_: str, data: dict) -> None:
        try:
            self.server.conn.respond(self.msg, {"id": self.jobid, "rank": self.server.broker_rank,
                                                "type": type_, "data": data})
        except OSError:
            pass  # the broker is gone; on_lost cleans up

    def started(self, shell: JobShell) -> None:
        # pids let the broker kill the tasks should this server die
        self._send("start", {"pids": [t.pid for t in shell.tasks]})

    def exception(self, shell: JobShell, etype: str, note: str, severity: int = 0) -> None:
        self._send("exception", {"type": etype, "severity": severity, "note": note})

    def task_exit(self, shell: JobShell, info: dict) -> None:
        self._send("task-exit", info)

    def finished(self, shell: JobShell, status: int) -> None:
        data: dict = {"status": status}
        if shell.first_exit is not None and not shell.first_exit_reported:
            data["task"] = shell.first_exit
        if shell.output_tail:
            data["output"] = shell.output_tail.decode()  # JSON lines: valid UTF-8
        self._send("finish", data)
        self.server.forget(shell)


class ShellServer:
    def __init__(self, broker_rank: int, uri: str, hostname: str, rundir: str | None,
                 jobid_path: str, plugins: PluginStack | None = None):
        self.broker_rank = broker_rank
        self.uri = uri
        self.hostname = hostname
        self.rundir = rundir
        self.jobid_path = jobid_path
        self.conn: Connection | None = None
        self.spawner = Spawner()
        self.plugins = plugins if plugins is not None else PluginStack()
        self.jobs: dict[int, JobShell] = {}
        self.services: dict[str, JobShell] = {}
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------ plumbing
    async def attach(self, sock: socket.socket) -> None:
        # set before any request can arrive: requests may already wait in the socket
        self.conn = Connection(on_request=self.on_request, on_lost=self.on_lost)
        await self.conn.adopt(sock)
        for r in self.plugins.records:
            if not r.loaded and r.error != "disabled by config":
                self.log(f"shell plugin {r.name} ({r.distribution}) failed to load: {r.error}",
                         level=3)

    def log(self, text: str, level: int = 6) -> None:
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.send_noresponse("log.append", {"level": level, "message": text,
                                                         "appname": "flux-shell"})
            except OSError:
                pass

    def on_lost(self, exc: BaseException) -> None:
        for shell in list(self.jobs.values()):
            shell.abort()
        self.jobs.clear()
        if not self.done.done():
            self.done.set_result(None)

    def forget(self, shell: JobShell) -> None:
        if self.jobs.get(shell.jobid) is shell:
            del self.jobs[shell.jobid]
        self.services.pop(shell.service, None)

    # ------------------------------------------------------------ requests
    def on_request(self, msg: Message) -> None:
        topic = msg.topic
        try:
            if topic == "job-shell.start":
                self.start(msg)
            elif topic == "job-shell.kill":
                self.kill(msg)
            elif topic == "job-shell.stdin":
                p = msg.data() or {}
                self.stdin(msg, self.jobs.get(p.get("id")), p)
            elif topic.endswith(".stdin"):
                self.stdin(msg, self.services.get(topic[:-len(".stdin")]), msg.data() or {})
            elif "." in topic and topic.partition(".")[0] in self.services:
                svc, _, method = topic.partition(".")
                self.services[svc].service_request(method, msg)
            elif topic == "job-shell.list":
                self.conn.respond(msg, {"rank": self.broker_rank, "jobs": [
                    {"id": s.jobid, "pids": [t.pid for t in s.tasks]} for s in self.jobs.values()]})
            else:
                self.conn.respond_error(msg, errno.ENOSYS, f"No service matching {topic}")
        except OSError as exc:
            if not self.conn.closed:
                self.conn.respond_error(msg, exc.errno or errno.EINVAL, exc.strerror or str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.conn.respond_error(msg, errno.EPROTO, f"malformed {topic} request: {exc!r}")

    def start(self, msg: Message) -> None:
        p = msg.data()
        jobid = p["id"]
        if not isinstance(jobid, int) or jobid in self.jobs:
            raise OSError(errno.EEXIST, f"job {jobid} already has a shell on rank "
                                        f"{self.broker_rank}")
        shell = JobShell(self, jobid, p.get("userid", os.getuid()), p["jobspec"], p["R"],
                         ServerReporter(self, msg, jobid))
        self.jobs[jobid] = shell
        self.services[shell.service] = shell
        shell.start()

    def kill(self, msg: Message) -> None:
        p = msg.data()
        shell = self.jobs.get(p.get("id"))
        if shell is None:
            raise OSError(errno.ENOENT, f"job {p.get('id')} has no shell on rank "
                                        f"{self.broker_rank}")
        signum = p.get("signum", signal.SIGTERM)
        if isinstance(signum, bool) or not isinstance(signum, int) or not 0 < signum < 65:
            raise OSError(errno.EINVAL, f"invalid signal number {signum!r}")
        shell.kill(signum)
        self.conn.respond(msg, {})

    def stdin(self, msg: Message, shell: JobShell | None, p: dict) -> None:
        if shell is None:
            raise OSError(errno.ENOENT, "no such job shell on this rank")
        data = p.get("data") or ""
        raw = base64.b64decode(data) if p.get("encoding") == "base64" else data.encode()
        ranks = p.get("rank", p.get("ranks", "all"))
        eof = bool(p.get("eof"))
        if not msg.topic.startswith("job-shell."):
            # the leader's service: record in the input eventlog, reach every shell
            self._record_input(shell, p)
            for r in shell.info.ranks if shell.info else ():
                if r.rank != self.broker_rank:
                    fwd = {"id": shell.jobid, "rank": ranks, "eof": eof, "data": data}
                    if p.get("encoding"):
                        fwd["encoding"] = p["encoding"]
                    self.conn.rpc("job-shell.stdin", fwd, nodeid=r.rank)
        shell.stdin(ranks, raw, eof)
        self.conn.respond(msg, {})

    @staticmethod
    def _record_input(shell: JobShell, p: dict) -> None:
        from flux.shell.output import entry

        ctx = {k: p[k] for k in ("stream", "rank", "data", "encoding", "eof") if k in p}
        ctx.setdefault("stream", "stdin")
        ctx.setdefault("rank", "all")
        shell.kvs_append("input", entry("data", ctx))


async def serve(fd: int, args: argparse.Namespace) -> int:
    os.set_inheritable(fd, False)  # tasks must not hold the broker connection open
    sock = socket.socket(fileno=fd)
    server = ShellServer(args.rank, args.uri, args.hostname, args.rundir, args.jobid_path)
    await server.attach(sock)
    await server.done
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="flux-shell-server", description=__doc__.split("\n")[0])
    p.add_argument("--fd", type=int, required=True, help="socket connected to the broker")
    p.add_argument("--rank", type=int, required=True, help="broker rank")
    p.add_argument("--uri", required=True, help="the broker's local-uri (tasks' FLUX_URI)")
    p.add_argument("--hostname", default=os.uname().nodename)
    p.add_argument("--rundir", default=None)
    p.add_argument("--jobid-path", default="/")
    args = p.parse_args(argv)
    # the broker decides when we stop (by closing the socket), not the terminal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the spawning threads need the GIL back right after each child's exec; with the
    # default 5 ms switch interval a busy event loop makes every task start wait
    sys.setswitchinterval(0.0005)
    return asyncio.run(serve(args.fd, args))


if __name__ == "__main__":
    sys.exit(main())
