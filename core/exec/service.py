"""The `job-exec` service (RFC 32): starts a job on its R, reports start, finish, release.

Two ways to run a job:
- test mode (`attributes.system.exec.test = {run_duration: FSD}`): no processes;
  the job "runs" for run_duration and finishes with status 0. For scheduling
  benchmarks, as flux-core's testexec.
- real mode: a launcher (see `Launcher`) starts a job shell per rank of R and
  reports their events.

Exec enforces the time limit: at expiration it raises a `timeout` exception and
signals the job, then kills it after `exec.kill-timeout`.
"""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Any

from flux.core.broker.service import NOREPLY, Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_kvs
from flux.core.message import ROLE_OWNER
from flux.core.util.fsd import parse_fsd


class ExecJob:
    __slots__ = ("id", "userid", "jobspec", "R", "msg", "handle", "timer", "kill_timer",
                 "finished", "killed", "exception_sent", "critical", "signaled")

    def __init__(self, jobid: int, userid: int, jobspec: dict, R: dict, msg):
        self.id, self.userid, self.jobspec, self.R, self.msg = jobid, userid, jobspec, R, msg
        self.handle: Any = None  # launcher's per-job object
        self.timer: asyncio.TimerHandle | None = None
        self.kill_timer: asyncio.TimerHandle | None = None
        self.finished = False
        self.killed = 0
        self.exception_sent = False
        self.critical: str | None = None  # set when the job is a child instance
        self.signaled = 0  # the last signal exec sent the job


class Launcher:
    """How real jobs start. A launcher calls the ExecService's `started`, `finished`,
    `exception` and `released` methods as the job's shells report."""

    def __init__(self, exec_service: ExecService):
        self.exec = exec_service

    async def launch(self, job: ExecJob) -> None:
        raise NotImplementedError

    async def kill(self, job: ExecJob, signum: int) -> None:
        raise NotImplementedError


class ExecService(Service):
    name = "job-exec"

    def __init__(self, broker, launcher_factory=None):
        super().__init__(broker)
        self.jobs: dict[int, ExecJob] = {}
        conf = broker.conf.get("exec", {})
        self.kill_timeout = parse_fsd(conf.get("kill-timeout", "5s"))
        self.launcher: Launcher | None = launcher_factory(self) if launcher_factory else None

    async def hello(self) -> None:
        await self.broker.rpc("job-manager.exec-hello", {"service": self.name})

    # ------------------------------------------------------------ reporting
    def _send(self, job: ExecJob, type_: str, data: dict | None = None) -> None:
        self.respond(job.msg, {"id": job.id, "type": type_, "data": data or {}})

    def started(self, job: ExecJob) -> None:
        self._send(job, "start")

    def finished(self, job: ExecJob, status: int) -> None:
        if not job.finished:
            job.finished = True
            self._cancel_timers(job)
            self._send(job, "finish", {"status": status})

    def exception(self, job: ExecJob, etype: str, note: str, severity: int = 0) -> None:
        if severity == 0:
            if job.exception_sent:
                return
            job.exception_sent = True
        self._send(job, "exception", {"type": etype, "severity": severity, "note": note})

    def released(self, job: ExecJob) -> None:
        self._cancel_timers(job)
        self.jobs.pop(job.id, None)
        self._send(job, "release", {"ranks": "all", "final": True})

    def _cancel_timers(self, job: ExecJob) -> None:
        for t in (job.timer, job.kill_timer):
            if t is not None:
                t.cancel()
        job.timer = job.kill_timer = None

    # ---------------------------------------------------------------- start
    @method("start", streaming=True, owner_only=True)
    def start_(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        jobspec = require(p, "jobspec", dict, msg.topic)
        R = require(p, "R", dict, msg.topic)
        job = ExecJob(jobid, p.get("userid", msg.userid), jobspec, R, msg)
        if jobid in self.jobs:
            raise FluxError(errno.EEXIST, f"job {jobid} is already running")
        self.jobs[jobid] = job
        loop = asyncio.get_running_loop()
        exp = (R.get("execution") or {}).get("expiration") or 0
        if exp:
            job.timer = loop.call_later(max(0.0, exp - time.time()), self._expire, job)
        test = ((jobspec.get("attributes") or {}).get("system") or {}).get("exec", {})
        if isinstance(test, dict) and "test" in test:
            self._run_test(job, test["test"] or {})
        elif self.launcher is None:
            self.exception(job, "start", "no job launcher is configured")
            self.finished(job, 1 << 8)
            self.released(job)
        else:
            asyncio.ensure_future(self._launch(job))
        return NOREPLY

    async def _launch(self, job: ExecJob) -> None:
        try:
            self._whole_jobspec(job)
            await self.launcher.launch(job)
        except Exception as exc:  # noqa: BLE001 - a failed launch fails the job, not exec
            self.broker.log_exception(f"job-exec: launching {job.id}", exc)
            if job.id in self.jobs:
                self.exception(job, "start", f"failed to start job shells: {exc}")
                self.finished(job, 1 << 8)
                self.released(job)

    def _whole_jobspec(self, job: ExecJob) -> None:
        """The job manager passes its jobspec without the environment (as flux-core's
        does); the shells need the whole one, which the KVS has."""
        env = ((job.jobspec.get("attributes") or {}).get("system") or {}).get("environment")
        kvs = getattr(self.broker, "kvs", None)
        if env is not None or kvs is None:
            return
        try:
            job.jobspec = kvs.lookup_json("primary", f"{encode_kvs(job.id)}.jobspec")
        except FluxError as exc:
            if exc.errno != errno.ENOENT:  # a job made without ingest (tests) has none
                raise

    def _run_test(self, job: ExecJob, spec: dict) -> None:
        try:
            duration = parse_fsd(spec.get("run_duration", "0s")) if isinstance(spec, dict) else 0.0
        except ValueError as exc:
            self.exception(job, "start", f"exec.test.run_duration: {exc}")
            self.finished(job, 1 << 8)
            self.released(job)
            return
        self.started(job)
        code = int(spec.get("override-status", 0)) if isinstance(spec, dict) else 0

        def done():
            job.handle = None  # the handle holds this closure: no cycle left for the gc
            if job.id in self.jobs and not job.finished:
                self.finished(job, code << 8)
                self.released(job)

        job.handle = asyncio.get_running_loop().call_later(duration, done)

    # --------------------------------------------------------- termination
    def _expire(self, job: ExecJob) -> None:
        job.timer = None
        if job.finished or job.id not in self.jobs:
            return
        self.exception(job, "timeout", "resource allocation expired")
        self._signal(job, 14)  # SIGALRM, as flux-core sends at the time limit

    def _signal(self, job: ExecJob, signum: int) -> None:
        job.signaled = signum
        if isinstance(job.handle, asyncio.TimerHandle):  # test mode: "processes" die at once
            job.handle.cancel()
            self.finished(job, signum)
            self.released(job)
            return
        if self.launcher is not None:
            asyncio.ensure_future(self.launcher.kill(job, signum))
        if job.kill_timer is None and signum in (14, 15):
            job.kill_timer = asyncio.get_running_loop().call_later(
                self.kill_timeout, self._escalate, job)

    def _escalate(self, job: ExecJob) -> None:
        job.kill_timer = None
        if job.id in self.jobs and not job.finished:
            job.killed += 1
            if self.launcher is not None:
                asyncio.ensure_future(self.launcher.kill(job, 9))
            if job.killed < 8:
                job.kill_timer = asyncio.get_running_loop().call_later(
                    self.kill_timeout, self._escalate, job)

    @method("critical-ranks")
    def critical_ranks(self, msg):
        """A child instance running as this job names its critical broker ranks: the
        job is an instance, and losing such a broker fails it (SPEC 6.6)."""
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        ranks = require(p, "ranks", str, msg.topic)
        job = self.jobs.get(jobid)
        if job is None:
            raise FluxError(errno.ENOENT, f"job {jobid} is not running")
        if msg.userid != job.userid and not (msg.rolemask & ROLE_OWNER):
            raise FluxError(errno.EPERM, f"job {jobid} belongs to another user")
        job.critical = ranks
        return {}

    @method("kill", owner_only=True)
    def kill(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        signum = p.get("signum", 15)
        job = self.jobs.get(jobid)
        if job is None:
            raise FluxError(errno.ENOENT, f"job {jobid} is not running")
        self._signal(job, signum)
        return {}

    async def stop(self) -> None:
        for job in list(self.jobs.values()):
            self._cancel_timers(job)
            if isinstance(job.handle, asyncio.TimerHandle):
                job.handle.cancel()
            elif self.launcher is not None:
                try:
                    await self.launcher.kill(job, 9)
                except Exception:  # noqa: BLE001
                    pass
