"""A leaf of an ensemble: runs the jobs its parent sends, with its scheduler and exec.

The root instance keeps every job's record (eventlog, state, result: what users
follow and wait for), so a leaf does not make a second one. It asks its scheduler
for an allocation (`sched.alloc`, as the job manager would) and its exec service to
run the job (`<exec>.start`), and sends the job's events up: alloc (with R),
start, finish (with the exec eventlog and output of a real job), clean, and
exceptions. No job-manager job, eventlog or job-list entry is made here: that was
about half of what a job cost a leaf. The jobs keep ids from the leaf's job id
sequence, so they never collide with jobs submitted to the leaf directly.

Responses of the scheduler and exec are gathered and handled once per event-loop
turn (callbacks, not one task per job).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import time

from flux.core.errors import FluxError
from flux.core.job.fluid import encode_f58, encode_kvs
from flux.core.message import FLAG_STREAMING, Message

GUEST_KEYS = ("exec.eventlog", "output", "input")
SUCCESS, ANNOTATE, DENY, CANCEL = 0, 1, 2, 3
UNLINK_DELAY = 0.5  # seconds finished jobs' KVS directories wait to be removed together


class LeafJob:
    __slots__ = ("key", "id", "jobspec", "userid", "priority", "t_submit", "origin", "R",
                 "alloc_tag", "exec_tag", "status", "fatal", "canceled", "kill_sent", "test",
                 "started")

    def __init__(self, key: int, jobid: int, jobspec: dict, userid: int, priority: int,
                 t_submit: float, origin: str | None = None):
        self.key = key
        self.origin = origin
        self.id = jobid
        self.jobspec = jobspec
        self.userid = userid
        self.priority = priority
        self.t_submit = t_submit
        self.R: dict | None = None
        self.alloc_tag: int | None = None  # sched.alloc outstanding
        self.exec_tag: int | None = None  # exec running (until its final release)
        self.status: int | None = None
        self.fatal = False  # a fatal exception was sent up
        self.canceled = False
        self.kill_sent = False
        self.started = False
        ex = (jobspec.get("attributes") or {}).get("system", {}).get("exec")
        self.test = isinstance(ex, dict) and "test" in ex


class _Stream:
    """The broker's internal-RPC slot for one request: responses are queued for the
    runner's next turn instead of waking a task per job."""

    __slots__ = ("runner", "job", "kind", "done")

    def __init__(self, runner: Runner, job: LeafJob, kind: str):
        self.runner = runner
        self.job = job
        self.kind = kind
        self.done = False

    def deliver(self, msg: Message) -> None:
        self.runner._delivered(self, msg)


class Runner:
    def __init__(self, svc):
        self.svc = svc
        self.broker = svc.broker
        self.jm = svc.broker.job_manager
        self.by_key: dict[int, LeafJob] = {}
        self.waiting: collections.deque[LeafJob] = collections.deque()  # sched limit reached
        self.alloc_outstanding = 0
        self.inbox: list[tuple[_Stream, Message]] = []
        self.drain_scheduled = False
        self.unlinks: list[dict] = []
        self.unlink_timer: asyncio.TimerHandle | None = None
        self.stats = {"ran": 0, "t_last": None}

    # ------------------------------------------------------------ requests
    def _request(self, topic: str, payload: dict, job: LeafJob, kind: str) -> int:
        b = self.broker
        tag = b.next_matchtag()
        b.internal_pending[tag] = _Stream(self, job, kind)
        b.send_internal(Message.request(topic, payload, flags=FLAG_STREAMING, matchtag=tag))
        return tag

    def _end(self, tag: int | None) -> None:
        if tag is not None:
            self.broker.internal_pending.pop(tag, None)

    def _delivered(self, stream: _Stream, msg: Message) -> None:
        # called from inside the scheduler's or exec's respond(): act on the next turn
        self.inbox.append((stream, msg))
        if not self.drain_scheduled:
            self.drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self.drain_scheduled = False
        inbox, self.inbox = self.inbox, []
        for stream, msg in inbox:
            try:
                if stream.kind == "alloc":
                    self._on_alloc(stream.job, msg)
                else:
                    self._on_exec(stream.job, msg)
            except Exception as exc:  # noqa: BLE001 - one job's trouble must not stop the others
                self.broker.log_exception(f"ensemble: job {stream.job.id}", exc)

    def _unlink(self) -> None:
        self.unlink_timer = None
        ops, self.unlinks = self.unlinks, []
        if not ops:
            return
        try:
            self.broker.kvs.commit_nowait("primary", ops)
        except FluxError as exc:
            self.broker.log(4, f"ensemble: removing finished jobs' KVS directories: "
                               f"{exc.strerror}")

    # -------------------------------------------------------------- submit
    async def submit(self, items: list[dict]) -> None:
        if not self.jm.sched_ready:
            await self.jm.sched_up.wait()
        up = self.svc.upstream
        for it in items:
            key = it.get("key")
            try:
                job = self._make(it)
            except FluxError as exc:
                up.send(key, "exception", {"type": "ensemble", "severity": 0,
                                           "note": f"refused by the leaf instance: {exc.strerror}"})
                up.send(key, "clean", None)
                continue
            self.by_key[key] = job
            self.waiting.append(job)
        self._request_allocs()

    def _make(self, it: dict) -> LeafJob:
        jobspec = it.get("jobspec")
        if not isinstance(jobspec, dict):
            raise FluxError(errno.EPROTO, "forwarded job has no jobspec")
        attrs_ = jobspec.get("attributes") or {}
        system = attrs_.get("system") or {}
        if not isinstance(attrs_, dict) or not isinstance(system, dict):
            raise FluxError(errno.EPROTO, "forwarded job has a bad attributes.system")
        env = it.get("env")
        if env is not None or "dependencies" in system:
            # the jobspec is shared by the batch's jobs: this job's own copy of the
            # levels that change (its environment back; dependencies were met above)
            system = {k: v for k, v in system.items() if k != "dependencies"}
            if env is not None:
                system["environment"] = env
            jobspec = {**jobspec, "attributes": {**attrs_, "system": system}}
        job = LeafJob(it["key"], self.jm.next_id(), jobspec, it["userid"],
                      it.get("priority", it.get("urgency", 16)), it.get("t_submit", time.time()),
                      it.get("origin"))
        J = it.get("J")
        if isinstance(J, str):
            # a guest's signed request: exec hands it to the IMP (the owner's needs none)
            self.broker.kvs.commit_nowait("primary", [{"key": encode_kvs(job.id) + ".J",
                                                       "flags": 0, "raw": J.encode()}])
        return job

    def _request_allocs(self) -> None:
        limit = self.jm.sched_limit
        while self.waiting and not (limit and self.alloc_outstanding >= limit):
            job = self.waiting.popleft()
            if job.canceled:
                continue
            self.alloc_outstanding += 1
            job.alloc_tag = self._request("sched.alloc", {
                "id": job.id, "priority": job.priority, "userid": job.userid,
                "t_submit": job.t_submit, "jobspec": job.jobspec}, job, "alloc")

    # --------------------------------------------------------------- alloc
    def _on_alloc(self, job: LeafJob, msg: Message) -> None:
        up = self.svc.upstream
        if msg.errnum:
            self._alloc_done(job)
            self._fail(job, "alloc", f"the leaf's scheduler failed: {msg.errstr() or msg.errnum}")
            self._clean(job)
            return
        resp = msg.data() or {}
        t = resp.get("type")
        if t == ANNOTATE:
            return
        self._alloc_done(job)
        if t == SUCCESS:
            job.R = resp.get("R")
            if job.canceled:  # the cancel raced the allocation
                self._free(job)
                self._clean(job)
                return
            ann = resp.get("annotations")
            up.send(job.key, "alloc", {"annotations": ann} if ann else None,
                    {"R": job.R} if job.R is not None else None)
            self._start(job)
        elif t == DENY:
            self._fail(job, "alloc", resp.get("note", "alloc denied"))
            self._clean(job)
        else:  # CANCEL: the exception went up with the cancel
            self._clean(job)

    def _alloc_done(self, job: LeafJob) -> None:
        self._end(job.alloc_tag)
        job.alloc_tag = None
        self.alloc_outstanding = max(0, self.alloc_outstanding - 1)
        if self.waiting:
            self._request_allocs()

    # ---------------------------------------------------------------- exec
    def _start(self, job: LeafJob) -> None:
        svc = self.jm.exec_service
        if svc is None:
            self._fail(job, "start", "no exec service is registered")
            self._free(job)
            self._clean(job)
            return
        job.exec_tag = self._request(f"{svc}.start", {
            "id": job.id, "userid": job.userid, "jobspec": job.jobspec, "R": job.R,
            "reattach": False}, job, "exec")

    def _on_exec(self, job: LeafJob, msg: Message) -> None:
        up = self.svc.upstream
        if msg.errnum:
            self._end(job.exec_tag)
            job.exec_tag = None
            self._fail(job, "exec", f"exec failed: {msg.errstr() or msg.errnum}")
            if job.status is not None:
                up.send(job.key, "finish", {"status": job.status})
            self._free(job)
            self._clean(job)
            return
        resp = msg.data() or {}
        t = resp.get("type")
        data = resp.get("data") or {}
        if t == "start":
            job.started = True
            up.send(job.key, "start", None)
        elif t == "finish":
            job.status = data.get("status", 0)  # goes up with release, and the output
        elif t == "exception":
            ctx = {"type": data.get("type", "exec"), "severity": data.get("severity", 0)}
            if data.get("note"):
                ctx["note"] = data["note"]
            up.send(job.key, "exception", ctx)
            if ctx["severity"] == 0:
                job.fatal = True
                self._kill(job, 15)
        elif t == "release" and data.get("final", True):
            self._end(job.exec_tag)
            job.exec_tag = None
            if job.status is not None:
                up.send(job.key, "finish", {"status": job.status}, self._guest(job))
            self._free(job)
            self._clean(job)

    def _kill(self, job: LeafJob, signum: int) -> None:
        """Signal a running job's tasks (a fatal exception stops them, as the job
        manager does, unless they already finished)."""
        if job.exec_tag is None or job.status is not None:
            return
        if signum == 15:
            if job.kill_sent:
                return
            job.kill_sent = True
        self.broker.send_internal_noresponse(f"{self.jm.exec_service}.kill",
                                             {"id": job.id, "signum": signum})

    # ------------------------------------------------------------- the end
    def _fail(self, job: LeafJob, etype: str, note: str) -> None:
        if not job.fatal:
            job.fatal = True
            self.svc.upstream.send(job.key, "exception", {"type": etype, "severity": 0,
                                                          "note": note})

    def _free(self, job: LeafJob) -> None:
        if job.R is not None:
            self.broker.send_internal_noresponse("sched.free", {"id": job.id, "R": job.R,
                                                                "final": True})

    def _clean(self, job: LeafJob) -> None:
        if self.by_key.pop(job.key, None) is None:
            return
        # the scheduler stored R (and exec the output) under job.<id>: no job record
        # here will purge them, so they go with the job
        self.unlinks.append({"key": encode_kvs(job.id), "flags": 0, "dirent": None})
        if self.unlink_timer is None:
            # gathered for a while: every commit is an event to all the leaf's brokers
            self.unlink_timer = asyncio.get_running_loop().call_later(UNLINK_DELAY, self._unlink)
        self.stats["ran"] += 1
        self.stats["t_last"] = time.time()
        self.svc.upstream.send(job.key, "clean", None)

    def _guest(self, job: LeafJob) -> dict | None:
        if job.test:
            return None
        kvs = self.broker.kvs
        d = encode_kvs(job.id) + ".guest."
        guest = {}
        for k in GUEST_KEYS:
            try:
                guest[k] = kvs.lookup_value("primary", d + k).decode("utf-8", "replace")
            except FluxError:
                continue
        return {"guest": guest} if guest else None

    def describe(self) -> dict:
        """The jobs this leaf is running (`flux ensemble status` in the leaf)."""
        def state(j: LeafJob) -> str:
            return ("run" if j.exec_tag is not None else "alloc" if j.alloc_tag is not None
                    else "waiting")
        return {"ran": self.stats["ran"],
                "active": [{"id": encode_f58(j.id), "origin": j.origin, "state": state(j)}
                           for j in self.by_key.values()]}

    # ------------------------------------------------------- from the parent
    def cancel(self, key: int, ctx: dict) -> None:
        job = self.by_key.get(key)
        if job is None:
            return
        c = {"type": ctx.get("type", "cancel"), "severity": 0,
             "note": ctx.get("note", "canceled in the parent instance")}
        if "userid" in ctx:
            c["userid"] = ctx["userid"]
        if not job.fatal:
            job.fatal = True
            self.svc.upstream.send(key, "exception", c)
        job.canceled = True
        if job.alloc_tag is not None:
            self.broker.send_internal_noresponse("sched.cancel", {"id": job.id})
        elif job.exec_tag is not None:
            self._kill(job, 15)
        elif job.R is None:  # still waiting for a free alloc slot
            self._clean(job)

    def kill(self, key: int, signum: int) -> None:
        job = self.by_key.get(key)
        if job is not None:
            self._kill(job, signum)
