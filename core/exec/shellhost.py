"""The `job-shell` service on every rank: the broker's side of the shell server.

The job shells of a rank live in one long-lived process, the shell server
(`flux.shell.server`), started here on first need with a socketpair to this broker
(seen as an ordinary local client with owner credentials). Requests for
`job-shell.*` are forwarded to it unchanged, so its responses go straight back
to the requester (exec on rank 0) along the request's route.

Guests' jobs (multi-user) are not hosted: each runs its own `flux-shell` as the
user through the IMP (core/exec/guest.py).

This service also:
- registers each running job's shell service name `<uid>-shell-<f58plain>`
  (SPEC 7.4) in the broker, forwarding its requests (`stdin`) to the server;
- remembers the start requests in flight, so that if the server dies each of
  them gets an error response (exec then fails the job) instead of silence; the
  next start launches a new server;
- stops the server (closing the socket makes it kill its tasks and exit) when
  the broker shuts down.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import sys

from flux.core.broker.local import LocalClient
from flux.core.broker.service import Service
from flux.core.exec.guest import GuestShells
from flux.core.hookspecs import hookimpl
from flux.core.job.fluid import encode_f58plain
from flux.core.message import RESPONSE, ROLE_OWNER, Message

STOP_TIMEOUT = 5.0


class ShellServerClient(LocalClient):
    """The broker's end of the shell server's socketpair."""

    def __init__(self, connector, host: ShellHost):
        super().__init__(connector)
        self.host = host
        self.provides.add("job-shell")  # it answers requests we forward

    def handle_message(self, msg: Message) -> None:
        if msg.type == RESPONSE and msg.topic == "job-shell.start":
            self.host.start_response(msg)
        super().handle_message(msg)

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        self.host.server_lost(self)


class ShellHost(Service):
    name = "job-shell"

    def __init__(self, broker):
        super().__init__(broker)
        self.client: ShellServerClient | None = None
        self.proc: subprocess.Popen | None = None
        self.connecting: asyncio.Future | None = None
        self.backlog: list[Message] = []
        # (matchtag, route) of a start request -> [jobid, service name, request, task pids]
        self.inflight: dict[tuple, list] = {}
        self.services: dict[str, int] = {}  # job shell service name -> userid
        self.stopping = False
        self.nstarted = 0  # servers started (for stats)
        self.guests = GuestShells(self)

    def topics(self) -> list[str]:
        return [self.name]

    # ------------------------------------------------------------ dispatch
    def dispatch(self, msg: Message) -> None:
        topic = msg.topic
        if topic == "job-shell.disconnect":
            return
        if topic.startswith("job-shell."):
            if not msg.rolemask & ROLE_OWNER:
                self.respond_error(msg, errno.EPERM, f"{topic} is restricted to the instance owner")
                return
            if topic == "job-shell.kill":
                p = msg.data() or {}
                sig = p.get("signum", 15)
                if isinstance(sig, int) and self.guests.kill(p.get("id"), sig):
                    self.respond(msg, {})
                    return
            if topic == "job-shell.stats":
                self.respond(msg, self.stats())
                return
            if topic == "job-shell.start":
                if self.stopping:
                    self.respond_error(msg, errno.ENOSYS, "the broker is shutting down")
                    return
                try:
                    p = msg.data()
                    if p.get("userid", self.broker.owner) != self.broker.owner:
                        self.guests.start(msg, p)  # run as the user, through the IMP
                        return
                    self._track(msg)
                except OSError as exc:
                    self.respond_error(msg, exc.errno, exc.strerror)
                    return
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    self.respond_error(msg, errno.EPROTO, f"malformed job-shell.start: {exc!r}")
                    return
        else:  # a job shell's own service (`<uid>-shell-<id>.<method>`)
            svc = topic.split(".", 1)[0]
            uid = self.services.get(svc)
            if uid is None:
                self.respond_error(msg, errno.ENOSYS, f"No service matching {topic} is registered")
                return
            if not msg.rolemask & ROLE_OWNER and msg.userid != uid:
                self.respond_error(msg, errno.EPERM, f"{svc} belongs to user {uid}")
                return
        self._forward(msg)

    def _track(self, msg: Message) -> None:
        p = msg.data()
        jobid = p["id"]
        uid = p.get("userid", msg.userid)
        svc = f"{uid}-shell-{encode_f58plain(jobid)}"
        self.inflight[(msg.matchtag, tuple(msg.route))] = [jobid, svc, msg, ()]
        if svc not in self.services:
            self.services[svc] = uid
            try:
                self.broker.register(svc, self)
            except OSError:
                pass  # someone else registered the name: their requests stay theirs

    def start_response(self, msg: Message) -> None:
        """A response to a start request passes: note the task pids; forget the job
        when it is the last."""
        key = (msg.matchtag, tuple(msg.route))
        if not msg.errnum:
            try:
                p = msg.data() or {}
            except ValueError:
                p = {}
            t = p.get("type")
            if t == "start":
                entry = self.inflight.get(key)
                if entry is not None:
                    entry[3] = tuple((p.get("data") or {}).get("pids") or ())
                return
            if t != "finish":
                return
        entry = self.inflight.pop(key, None)
        if entry is not None:
            self._unregister(entry[1])

    def _unregister(self, svc: str) -> None:
        if self.services.pop(svc, None) is not None and self.broker.services.get(svc) is self:
            self.broker.unregister(svc)

    def _forward(self, msg: Message) -> None:
        if self.client is not None and not self.client.closed:
            self.client.send(msg)
            return
        self.backlog.append(msg)
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._start_server())

    # ------------------------------------------------------------ server
    async def _start_server(self) -> None:
        try:
            client = await self._spawn()
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            self.broker.log_exception("job-shell: cannot start the shell server", exc)
            backlog, self.backlog = self.backlog, []
            for m in backlog:
                self._fail(m, errno.EAGAIN, f"cannot start the job shell server on rank "
                                            f"{self.broker.rank}: {exc}")
            return
        finally:
            self.connecting = None
        self.client = client
        backlog, self.backlog = self.backlog, []
        for m in backlog:
            client.send(m)

    async def _spawn(self) -> ShellServerClient:
        a = self.broker.attrs
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [sys.executable, "-P", "-m", "flux.shell.server", "--fd", str(theirs.fileno()),
               "--rank", str(self.broker.rank), "--uri", a["local-uri"],
               "--hostname", a.get("hostname") or os.uname().nodename,
               "--jobid-path", a.get("jobid-path") or "/"]
        if a.get("rundir"):
            cmd += ["--rundir", a["rundir"]]
        try:
            # its own session: a terminal's ^C reaches the broker, which decides
            self.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            theirs.close()
        self.nstarted += 1
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        _transport, client = await loop.connect_accepted_socket(
            lambda: ShellServerClient(self.broker.connector, self), sock=ours)
        self.broker.log(7, f"job-shell: shell server pid {self.proc.pid} started")
        return client

    def server_lost(self, client: ShellServerClient) -> None:
        if self.client is client:
            self.client = None
        status = self.proc.poll() if self.proc is not None else None
        if self.stopping:
            return
        what = f"exited with status {status}" if status is not None else "closed its connection"
        self.broker.log(3, f"job-shell: the shell server on rank {self.broker.rank} {what}")
        inflight, self.inflight = self.inflight, {}
        for _jobid, svc, m, pids in inflight.values():
            for pid in pids:  # its tasks (each leads its own process group) go too
                try:
                    os.killpg(pid, 9)
                except OSError:
                    pass
            self._unregister(svc)
            self._fail(m, errno.ECONNRESET, f"the job shell server on rank {self.broker.rank} "
                                            f"{what}")

    def _fail(self, msg: Message, errnum: int, text: str) -> None:
        if msg.topic == "job-shell.start":
            self.inflight.pop((msg.matchtag, tuple(msg.route)), None)
        self.respond_error(msg, errnum, text)

    def stats(self) -> dict:
        return {"rank": self.broker.rank, "running": len(self.inflight),
                "server-pid": self.proc.pid if self.proc and self.proc.poll() is None else 0,
                "servers-started": self.nstarted}

    async def stop(self) -> None:
        self.stopping = True
        await self.guests.stop()
        if self.client is not None and self.client.transport is not None:
            self.client.transport.close()
        proc = self.proc
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, proc.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            await loop.run_in_executor(None, proc.wait)


@hookimpl
def broker_services(broker):
    return [ShellHost(broker)]
