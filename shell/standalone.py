"""`flux-shell JOBID`: one job shell as its own process (flux-shell(1)).

This is what the multi-user IMP runs as the job's user (`flux-imp exec flux-shell
ID`), and what `python -m flux.shell ID` runs. It connects to the local broker
(FLUX_URI), reads the job's jobspec and R (job-info, else the KVS), runs the same
JobShell the shell server hosts, and exits with the largest task exit code (a task
killed by signal N counts 128+N). A fatal error is printed on stderr and raised as
an `exec` exception on the job.

The leader shell (shell rank 0) starts the output and input eventlogs if nobody did,
and posts `shell.init` and `shell.start` to the exec eventlog (there is no barrier
with other shells in this mode: it is meant for one shell per job and for tests).
With `--status-fd N`, the reports a hosted shell sends to exec (start, task-exit,
exception, finish) are written to fd N as JSON lines instead.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys

import orjson
from flux.core.errors import FluxError
from flux.core.message import ROLE_OWNER


class StandaloneReporter:
    def __init__(self, host: StandaloneHost, status_fd: int | None):
        self.host = host
        self.status_fd = status_fd
        self.status = 0
        self.done = asyncio.get_running_loop().create_future()

    def _write(self, type_: str, data: dict) -> None:
        if self.status_fd is not None:
            try:
                os.write(self.status_fd, orjson.dumps({"type": type_, "data": data}) + b"\n")
            except OSError:
                pass

    def started(self, shell) -> None:
        self._write("start", {})
        if shell.shell_rank == 0 and self.status_fd is None:  # else exec posts them
            from flux.shell.output import entry

            ctx = {"leader-rank": shell.info.ranks[0].rank, "size": shell.info.nnodes,
                   "service": shell.service}
            shell.kvs_append("exec.eventlog", entry("shell.init", ctx)
                             + entry("shell.start", {"taskmap": shell.info.taskmap.to_dict()}))

    def exception(self, shell, etype: str, note: str, severity: int = 0) -> None:
        print(f"flux-shell[{shell.shell_rank}]: FATAL: {note}", file=sys.stderr)
        self._write("exception", {"type": etype, "severity": severity, "note": note})
        try:
            self.host.conn.rpc("job-manager.raise", {"id": shell.jobid, "severity": severity,
                                                     "type": etype, "note": note})
        except OSError:
            pass

    def task_exit(self, shell, info: dict) -> None:
        self._write("task-exit", info)

    def finished(self, shell, status: int) -> None:
        data: dict = {"status": status}
        if shell.first_exit is not None and not shell.first_exit_reported:
            data["task"] = shell.first_exit
        self._write("finish", data)
        self.status = status
        if not self.done.done():
            self.done.set_result(status)


class StandaloneHost:
    """What a JobShell needs from its process, for a single shell."""

    def __init__(self, conn, broker_rank: int, uri: str, rundir: str | None, jobid_path: str,
                 hostname: str):
        from flux.shell.plugin import PluginStack
        from flux.shell.task import Spawner

        self.conn = conn
        self.broker_rank = broker_rank
        self.uri = uri
        self.rundir = rundir
        self.jobid_path = jobid_path
        self.hostname = hostname
        self.spawner = Spawner()
        self.plugins = PluginStack()

    def log(self, text: str) -> None:
        print(f"flux-shell: {text}", file=sys.stderr)


async def _attr(conn, name: str, default: str | None = None) -> str | None:
    try:
        return (await conn.rpc("attr.get", {"name": name}))["value"]
    except FluxError:
        return default


async def _job_data(conn, jobid: int) -> tuple[dict, dict, int]:
    """jobspec, R and the job's userid, from job-info (or the KVS when absent)."""
    from flux.core.job.fluid import encode_kvs

    try:
        r = await conn.rpc("job-info.lookup", {"id": jobid, "keys": ["jobspec", "R"],
                                               "flags": 1})
        events = (await conn.rpc("job-info.lookup", {"id": jobid, "keys": ["eventlog"],
                                                     "flags": 0}))["eventlog"]
        if isinstance(events, str):
            events = [orjson.loads(line) for line in events.splitlines() if line]
        userid = next((e["context"]["userid"] for e in events if e.get("name") == "submit"),
                      os.getuid())
        return r["jobspec"], r["R"], userid
    except FluxError as exc:
        if exc.errno not in (errno.ENOSYS, errno.ENOENT):
            raise
    d = encode_kvs(jobid)

    async def get(key: str):
        import base64

        v = await conn.rpc("kvs.lookup", {"key": f"{d}.{key}", "namespace": "primary",
                                          "flags": 0})
        return base64.b64decode(v["val"]["data"])

    jobspec = orjson.loads(await get("jobspec"))
    R = orjson.loads(await get("R"))
    userid = os.getuid()
    try:
        for line in (await get("eventlog")).splitlines():
            e = orjson.loads(line)
            if e.get("name") == "submit":
                userid = e["context"]["userid"]
                break
    except FluxError:
        pass
    return jobspec, R, userid


async def run(jobid: int, status_fd: int | None) -> int:
    from flux.shell.conn import Connection
    from flux.shell.shell import JobShell

    uri = os.environ.get("FLUX_URI")
    if not uri:
        raise FluxError(errno.EINVAL, "FLUX_URI is not set: flux-shell runs under a broker")
    holder: dict = {}

    def on_request(msg):
        shell = holder.get("shell")
        if msg.userid != os.getuid() and not msg.rolemask & ROLE_OWNER:
            conn.respond_error(msg, errno.EPERM, f"job {jobid}'s shell belongs to another user")
            return
        if shell is not None and msg.topic == f"{shell.service}.stdin":
            import base64

            p = msg.data() or {}
            data = p.get("data") or ""
            raw = base64.b64decode(data) if p.get("encoding") == "base64" else data.encode()
            shell.stdin(p.get("rank", "all"), raw, bool(p.get("eof")))
            conn.respond(msg, {})
        elif shell is not None and msg.topic.startswith(shell.service + "."):
            # methods plugins registered (e.g. the PMI exchange between shells)
            shell.service_request(msg.topic[len(shell.service) + 1:], msg)
        else:
            conn.respond_error(msg, errno.ENOSYS, f"No service matching {msg.topic}")

    conn = Connection(on_request=on_request)
    await conn.open(uri)
    rank = int(await _attr(conn, "rank", "0"))
    host = StandaloneHost(conn, rank, await _attr(conn, "local-uri", uri) or uri,
                          await _attr(conn, "rundir"), await _attr(conn, "jobid-path", "/") or "/",
                          await _attr(conn, "hostname", os.uname().nodename) or os.uname().nodename)
    jobspec, R, userid = await _job_data(conn, jobid)
    own_tmp = None
    if not host.rundir or not os.access(host.rundir, os.W_OK):
        # a guest's shell cannot write the owner's rundir: a private base of its own
        import tempfile

        host.rundir = own_tmp = tempfile.mkdtemp(prefix=f"flux-shell-{os.getuid()}-")
    reporter = StandaloneReporter(host, status_fd)
    ns = f"job-{jobid}"
    try:  # start the guest eventlogs if exec did not
        await conn.rpc("kvs.lookup", {"key": "output", "namespace": ns, "flags": 0})
        headers = False
    except FluxError as exc:
        if exc.errno == errno.ENOTSUP:
            raise FluxError(exc.errno, f"the job's KVS namespace {ns} does not exist") from None
        headers = True
    shell = JobShell(host, jobid, userid, jobspec, R, reporter, write_headers=headers)
    holder["shell"] = shell
    try:
        await conn.rpc("service.add", {"service": shell.service})
    except FluxError:
        pass  # stdin only; the job still runs
    shell.start()
    # signals from exec (through the IMP when we run as a guest) are for the tasks
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGALRM, signal.SIGCONT):
        loop.add_signal_handler(sig, shell.kill, sig)
    status = await reporter.done
    conn.close()
    if own_tmp:
        import shutil

        shutil.rmtree(own_tmp, ignore_errors=True)
    return status >> 8


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="flux-shell", description="Run one job shell (the tasks "
                                "of JOBID on this broker's rank).")
    p.add_argument("--status-fd", type=int, default=None,
                   help="write start/exception/finish reports to this fd as JSON lines")
    p.add_argument("--reconnect", action="store_true", help="accepted for compatibility")
    p.add_argument("jobid", help="job id (any encoding)")
    args = p.parse_args(argv)
    from flux.core.job.fluid import parse

    try:
        jobid = parse(args.jobid)
    except ValueError as exc:
        print(f"flux-shell: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(run(jobid, args.status_fd))
    except FluxError as exc:
        print(f"flux-shell: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
