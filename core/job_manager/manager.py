"""The job manager: drives each job through NEW..INACTIVE (SPEC 4).

Every transition is an event appended to `job.<dothex>.eventlog` and offered to
listeners (journal, job-list, jobtap plugins). For throughput, events produced in
one event-loop turn are written to the KVS in one commit and sent to journal
readers in one batch; nothing waits on those writes except submission, which is
answered only once the job is stored (DESIGN invariant: nothing is lost).

The scheduler (RFC 27) and exec (RFC 32) are reached by RPC through the broker,
so either can be replaced by name.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
from flux.core.broker.service import NOREPLY, Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_kvs as kvs_dir
from flux.core.job_manager import eventlog
from flux.core.job_manager.job import (
    CLEANUP,
    DEPEND,
    INACTIVE,
    NEW,
    PRIORITY,
    RUN,
    SCHED,
    Job,
    next_state,
)
from flux.core.message import FLAG_STREAMING, ROLE_OWNER

APPEND = 32  # KVS op flag
ANY_JOB = 0xFFFFFFFFFFFFFFFF  # FLUX_JOBID_ANY
STATE_BITS = {NEW: 1, DEPEND: 2, PRIORITY: 4, SCHED: 8, RUN: 16, CLEANUP: 32, INACTIVE: 64}
USERID_ANY = 0xFFFFFFFF


def trim_memory() -> None:
    """Return the C heap's free pages to the system (glibc), at most once a second."""
    global _last_trim
    now = time.monotonic()
    if now - _last_trim < 1.0:
        return
    _last_trim = now
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


_last_trim = 0.0

_NO_DEPS: frozenset = frozenset()
_NONE: tuple = ()

# "t_" + state name, made once (a job records seven of them)
_T_KEY = {st: "t_" + st.lower() for st in STATE_BITS}


def _merge_appends(ops: list[dict]) -> list[dict]:
    """One append per eventlog per commit: a job often posts several events in one loop
    turn (submit, validate, depend, priority). The commit is one transaction, so
    readers see the same bytes either way; the KVS walks the tree once, not four times."""
    out: list[dict] = []
    appends: dict[str, dict] = {}
    for op in ops:
        key = op["key"]
        if op.get("flags") == APPEND and "raw" in op:
            prev = appends.get(key)
            if prev is not None:
                prev["raw"] += op["raw"]
                if op.get("evict"):
                    prev["evict"] = True
                continue
            op = appends[key] = dict(op)
        elif op.get("dirent", True) is None:
            appends.clear()  # an unlink (a purge): keep what follows after it
        else:
            appends.pop(key, None)
        out.append(op)
    return out


def _redact_R(R: Any) -> Any:
    """R without `scheduling` (the JGF, most of a graph scheduler's R), as flux-core's
    job manager keeps it: exec needs R_lite only; job-info reads the whole R from the KVS."""
    if isinstance(R, dict) and "scheduling" in R:
        return {k: v for k, v in R.items() if k != "scheduling"}
    return R


def _redact(jobspec: dict) -> None:
    """Drop what the job manager does not need in memory (the KVS keeps the whole
    jobspec): the environment, most of a jobspec's bytes."""
    try:
        jobspec["attributes"]["system"].pop("environment", None)
    except (KeyError, TypeError, AttributeError):
        pass


class JobManager(Service):
    name = "job-manager"

    def __init__(self, broker, jobtap=None, next_id: Callable[[], int] | None = None):
        super().__init__(broker)
        self.jobs: dict[int, Job] = {}  # active jobs
        self.inactive: collections.OrderedDict[int, Job] = collections.OrderedDict()
        self.jobtap = jobtap
        self.next_id = next_id
        self.listeners: list[Callable[[Job, dict], None]] = []
        self.journal_readers: dict[int, Any] = {}
        self._journal_batch: dict[int, list] = {}
        self._ops: list[dict] = []
        self._flush_scheduled = False
        self._flush_waiters: list[asyncio.Future] = []
        self.sched_ready = False
        self.sched_up = asyncio.Event()  # set once a scheduler said sched-ready
        self.sched_limit = 0  # 0 = unlimited
        self.alloc_outstanding = 0
        self.pending: dict[int, Job] = {}  # SCHED jobs without an alloc request
        self.exec_service: str | None = None
        self.queue_enabled = True
        self.queue_disable_reason: str | None = None
        self.queue_started = True
        self.queue_stop_reason: str | None = None
        # named queues ([queues] config): name -> {enable, start, disable_reason?, stop_reason?}
        self.named_queues: dict[str, dict] = {
            name: {"enable": True, "start": True} for name in (broker.conf.get("queues") or {})}
        self.wait_any: list = []  # job-manager.wait requests for FLUX_JOBID_ANY
        self.drain_waiters: list[asyncio.Future] = []
        self.idle_waiters: list[asyncio.Future] = []
        conf = broker.conf.get("job-manager", {})
        self.inactive_num_limit = int(conf.get("inactive-num-limit", 10000))
        from flux.core.util.fsd import parse_fsd

        self.inactive_age_limit = parse_fsd(conf.get("inactive-age-limit", "inf"))
        self.max_jobid = 0
        self._jobspec_cache: dict[bytes, dict] = {}  # see _shared()
        self._retired: list[Job] = []  # jobs whose last event goes out with the next flush
        self._annotation_cache: dict[bytes, dict] = {}  # see _compact()

    # ================================================================ events
    def post(self, job: Job, name: str, context: dict | None = None) -> None:
        """Append an event to the job's eventlog and apply its state change."""
        e = eventlog.entry(name, context)
        line = eventlog.encode(e)
        job.add_event(line)
        prev = job.state
        new = next_state(prev, name, context)
        # raw bytes: the in-broker KVS API skips the base64 of a wire dirent. The last
        # event (INACTIVE) lets the KVS drop the eventlog from memory once on disk.
        op = {"key": kvs_dir(job.id) + ".eventlog", "flags": APPEND, "raw": line}
        if new == INACTIVE:
            op["evict"] = True
        self._ops.append(op)
        self._journal(job, e)
        if name == "exception" and (context or {}).get("severity", 0) == 0 and job.exception is None:
            job.exception = context
        if name == "exception":
            if type(job.exceptions) is tuple:  # an inactive job's shared empty tuple
                job.exceptions = list(job.exceptions)
            job.exceptions.append(context)
        elif name == "finish":
            job.status = (context or {}).get("status", 0)
        elif name == "priority":
            job.priority = context["priority"]
        elif name == "memo":
            if not job.active:  # an inactive job's annotations may be shared (_retire)
                job.annotations = orjson.loads(orjson.dumps(job.annotations))
            user = job.annotations.setdefault("user", {})
            for k, v in (context or {}).items():
                if v is None:
                    user.pop(k, None)
                else:
                    user[k] = v
        for cb in self.listeners:
            cb(job, e)
        if self.jobtap is not None:
            self.jobtap.event(job, name, context or {})
        if new != prev:
            job.state = new
            job.times[_T_KEY[new]] = e["timestamp"]
            if self.jobtap is not None:
                self.jobtap.state(job, new, prev)
            self._enter(job, new, prev)
        self._schedule_flush()

    def _journal(self, job: Job, e: dict) -> None:
        if self.journal_readers:
            self._journal_batch.setdefault(job.id, []).append(e)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        ops, self._ops = _merge_appends(self._ops), []
        waiters, self._flush_waiters = self._flush_waiters, []
        retired, self._retired = self._retired, []
        if ops:
            try:  # applied in memory now, so readers of the KVS see these events at once
                fut = self.broker.kvs.commit_nowait("primary", ops)
            except FluxError as exc:
                fut = asyncio.get_running_loop().create_future()
                fut.set_exception(exc)
            fut.add_done_callback(lambda f: self._committed(f, waiters))
            if not fut.done():
                # the KVS now holds every event of these jobs: drop the in-memory copies
                for job in retired:
                    if job.state == INACTIVE:
                        job.release_eventlog(self)
        else:
            for w in waiters:
                if not w.done():
                    w.set_result(None)
        if self._journal_batch:
            batch, self._journal_batch = self._journal_batch, {}
            for jobid, events in batch.items():
                resp = {"id": jobid, "events": events}
                job = self.jobs.get(jobid) or self.inactive.get(jobid)
                if job is not None and events[0]["name"] == "submit":
                    resp["jobspec"] = job.jobspec
                if job is not None and any(ev["name"] == "alloc" for ev in events):
                    resp["R"] = job.R
                for msg in list(self.journal_readers.values()):
                    self.respond(msg, resp)

    def _committed(self, fut: asyncio.Future, waiters: list) -> None:
        exc = fut.exception()
        if exc is not None:
            self.broker.log_exception("job-manager: eventlog commit failed", exc)
        for w in waiters:
            if not w.done():
                if exc is not None:
                    w.set_exception(exc)
                else:
                    w.set_result(None)

    def stored(self) -> asyncio.Future:
        """A future done once everything posted so far is in the KVS."""
        f = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(f)
        self._schedule_flush()
        return f

    # ======================================================== state actions
    def _enter(self, job: Job, state: str, prev: str) -> None:
        if state == DEPEND:
            if self.jobtap is not None:
                self.jobtap.dependencies(job)
            if not job.dependencies and job.state == DEPEND:
                self.post(job, "depend")
        elif state == PRIORITY:
            if prev == SCHED:  # urgency change etc.: a queued alloc carries the old priority
                self.pending.pop(job.id, None)
                if job.alloc_pending:
                    self.broker.send_internal_noresponse("sched.cancel", {"id": job.id})
            # the policy comes only from `flux.jobtap` plugins (e.g. priority-default)
            prio = self.jobtap.priority(job) if self.jobtap is not None else None
            if prio is None or not 0 <= prio <= 4294967295:
                note = ("no jobtap plugin set a priority (is a priority plugin such as"
                        " flux-jobtap-priority installed and enabled?)" if prio is None
                        else f"the priority plugin returned {prio}, outside 0..4294967295")
                self.post(job, "exception", {"type": "priority", "severity": 0, "note": note})
                return
            self.post(job, "priority", {"priority": prio})
        elif state == SCHED:
            if job.delegate is not None:
                return  # already handed to another instance (urgency change)
            if self.jobtap is not None and job.priority != 0:
                job.delegate = self.jobtap.delegate(job)
                if job.delegate is not None:
                    return
            # a queued alloc is requeued by the scheduler's CANCEL answer; a held job
            # (priority 0) waits outside `pending`, so it is not re-sorted on every pass
            if not job.alloc_pending and job.priority != 0:
                self.pending[job.id] = job
                self._request_allocs()
        elif state == CLEANUP:
            self.pending.pop(job.id, None)
            self._cleanup(job)
        elif state == INACTIVE:
            self._retire(job)

    def dependency_add(self, job: Job, description: str) -> None:
        job.dependencies.add(description)
        self.post(job, "dependency-add", {"description": description})

    def dependency_remove(self, job: Job, description: str) -> None:
        if description in job.dependencies:
            job.dependencies.discard(description)
            self.post(job, "dependency-remove", {"description": description})
            if not job.dependencies and job.state == DEPEND:
                self.post(job, "depend")

    # prolog/epilog actions (flux-core's flux_jobtap_prolog_start/finish): while any is
    # open, the start request (RUN) or the free (CLEANUP) is held back
    def prolog_start(self, job: Job, description: str) -> None:
        self._action_start(job, "prolog-start", description)

    def prolog_finish(self, job: Job, description: str, status: int) -> None:
        self._action_finish(job, "prolog-finish", description, status)

    def epilog_start(self, job: Job, description: str) -> None:
        self._action_start(job, "epilog-start", description)

    def epilog_finish(self, job: Job, description: str, status: int) -> None:
        self._action_finish(job, "epilog-finish", description, status)

    def _action_start(self, job: Job, name: str, description: str) -> None:
        if not job.active:
            raise ValueError(f"{name}: job {job.id} is inactive")
        job.held_actions += 1
        self.post(job, name, {"description": description})

    def _action_finish(self, job: Job, name: str, description: str, status: int) -> None:
        if job.held_actions <= 0 or not job.active:
            raise ValueError(f"{name}: job {job.id} has no open prolog/epilog action")
        job.held_actions -= 1
        self.post(job, name, {"description": description, "status": status})
        if not job.held_actions:
            # resume on the next turn, so a plugin may raise an exception right after
            # the finish event without the job starting in between (as flux-core)
            asyncio.get_running_loop().call_soon(self._resume, job)

    def _resume(self, job: Job) -> None:
        if job.held_actions:
            return
        if job.state == RUN and job.has_resources and not job.exec_running and not job.started:
            self._start(job)
        elif job.state == CLEANUP:
            self._cleanup(job)

    def reprioritize(self, job: Job, priority: int) -> None:
        if job.state == SCHED and priority != job.priority:
            self.post(job, "priority", {"priority": priority})
            if self.sched_ready:
                self.broker.send_internal_noresponse("sched.prioritize",
                                                     {"jobs": [[job.id, priority]]})

    # ============================================================ scheduler
    def _request_allocs(self) -> None:
        if not self.sched_ready or not self.pending:
            return
        if self.sched_limit and self.alloc_outstanding >= self.sched_limit:
            return
        order = sorted(self.pending.values(), key=lambda j: (-j.priority, j.id))
        for job in order:
            if self.sched_limit and self.alloc_outstanding >= self.sched_limit:
                break
            if job.priority == 0 or not self._queue_started(job):  # held or queue stopped
                continue
            del self.pending[job.id]
            job.alloc_pending = True
            self.alloc_outstanding += 1
            self._alloc(job)

    def _alloc(self, job: Job) -> None:
        # a callback per response, not a task per job: a queue of 10,000 jobs keeps
        # 10,000 requests outstanding, and a task with its frames costs kilobytes each
        rpc = self.broker.rpc("sched.alloc", {"id": job.id, "priority": job.priority,
                                              "userid": job.userid, "t_submit": job.t_submit,
                                              "jobspec": job.jobspec}, flags=FLAG_STREAMING)
        rpc.then(self._alloc_response, job, rpc)

    def _alloc_response(self, job: Job, rpc, msg) -> None:
        if rpc.consumed:
            return  # (a response queued behind the final one)
        try:
            if msg.errnum:
                self.broker.log(3, f"job-manager: sched.alloc failed for {job.id}: "
                                   f"{msg.errstr() or os.strerror(msg.errnum)}; "
                                   f"scheduling suspended until the scheduler says hello again")
                self.sched_ready = False
                job.alloc_pending = False
                if job.state == SCHED:
                    self.pending[job.id] = job
                elif job.state == CLEANUP:
                    self._cleanup(job)
                return
            resp = msg.data() or {}
            t = resp.get("type")
            if t == 1:  # ANNOTATE: more responses follow
                self._annotate(job, resp.get("annotations") or {})
                return
            job.alloc_pending = False
            if t == 0:  # SUCCESS
                self._annotate(job, resp.get("annotations") or {})
                job.R = _redact_R(resp.get("R"))
                job.has_resources = True
                if job.state == SCHED:
                    # a copy: later memos change job.annotations, not this event
                    self.post(job, "alloc", {"annotations": orjson.loads(orjson.dumps(
                        job.annotations))} if job.annotations else None)
                    self._start(job)
                else:
                    self._cleanup(job)  # an exception raced the allocation
            elif t == 2:  # DENY
                if job.state == SCHED:
                    self.post(job, "exception", {"type": "alloc", "severity": 0,
                                                 "note": resp.get("note", "alloc denied")})
                else:
                    self._cleanup(job)
            elif t == 3:  # CANCEL
                if job.state == CLEANUP:
                    self._cleanup(job)
                elif job.state in (SCHED, PRIORITY):
                    if job.state == SCHED and job.priority != 0:
                        self.pending[job.id] = job
        except BaseException:
            job.alloc_pending = False
            raise
        finally:
            if not job.alloc_pending and not rpc.consumed:
                rpc.cancel()
                rpc.consumed = True
                self.alloc_outstanding = max(0, self.alloc_outstanding - 1)
                self._request_allocs()

    def _annotate(self, job: Job, ann: dict) -> None:
        def merge(dst, src):
            for k, v in src.items():
                if v is None:
                    dst.pop(k, None)
                elif isinstance(v, dict) and isinstance(dst.get(k), dict):
                    merge(dst[k], v)
                else:
                    dst[k] = v

        if ann:
            merge(job.annotations, ann)

    # ================================================================= exec
    def _start(self, job: Job) -> None:
        if job.held_actions or job.state != RUN:
            return
        if self.exec_service is None:
            self.post(job, "exception", {"type": "start", "severity": 0,
                                         "note": "no exec service is registered"})
            return
        job.exec_running = True
        asyncio.ensure_future(self._exec(job))

    async def _exec(self, job: Job) -> None:
        rpc = self.broker.rpc(f"{self.exec_service}.start",
                              {"id": job.id, "userid": job.userid, "jobspec": job.jobspec,
                               "R": job.R, "reattach": False}, flags=FLAG_STREAMING)
        try:
            while True:
                try:
                    resp = await rpc.get()
                except FluxError as exc:
                    if job.state == RUN:
                        self.post(job, "exception", {"type": "exec", "severity": 0,
                                                     "note": f"exec failed: {exc.strerror}"})
                    break
                t = resp.get("type")
                data = resp.get("data") or {}
                if t == "start":
                    job.started = True
                    self.post(job, "start")
                elif t == "finish":
                    self.post(job, "finish", {"status": data.get("status", 0)})
                elif t == "exception":
                    ctx = {"type": data.get("type", "exec"), "severity": data.get("severity", 0)}
                    if data.get("note"):
                        ctx["note"] = data["note"]
                    self.post(job, "exception", ctx)
                elif t == "release":
                    if data.get("final", True):
                        self.post(job, "release", {"ranks": data.get("ranks", "all"), "final": True})
                        break
        finally:
            rpc.cancel()
            job.exec_running = False
            if job.state == CLEANUP:
                self._cleanup(job)

    # ============================================================= cleanup
    def _cleanup(self, job: Job) -> None:
        if job.state != CLEANUP or job.freeing:
            return
        if job.delegate is not None:  # it runs elsewhere: the delegate posts `clean`
            job.delegate.cleanup(job)
            return
        if job.exec_running:
            # after `finish` the tasks are gone and exec's `release` is on its way;
            # only a job cut short (an exception while running) needs its tasks killed
            if job.status is None:
                asyncio.ensure_future(self._kill_exec(job))
            return
        if job.alloc_pending:
            self.broker.send_internal_noresponse("sched.cancel", {"id": job.id})
            return
        if job.held_actions:
            return
        if job.has_resources:
            job.freeing = True
            self.broker.send_internal_noresponse("sched.free", {"id": job.id, "R": job.R, "final": True})
            job.has_resources = False
            self.post(job, "free")
            job.freeing = False
        self.post(job, "clean")

    async def _kill_exec(self, job: Job) -> None:
        if job.aux.get("kill_sent"):
            return
        job.aux["kill_sent"] = True
        try:
            await self.broker.rpc(f"{self.exec_service}.kill", {"id": job.id, "signum": 15})
        except FluxError:
            pass

    def _retire(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        self.pending.pop(job.id, None)
        job.aux.clear()
        # an inactive job's jobspec is read from the KVS when asked for (journal replay,
        # job-info): thousands of inactive jobs must not each keep a parsed copy
        job.jobspec = None
        self.inactive[job.id] = job
        self._retired.append(job)
        for w in job.waiters:
            self._answer_wait(w, job)
        if job.flags & 4 and self.wait_any:
            self._answer_wait(self.wait_any.pop(0), job)
        self._compact(job)
        self._purge()
        self._check_drain()

    def _compact(self, job: Job) -> None:
        """Shrink what an inactive job keeps: thousands of them stay until purged. Its
        eventlog leaves memory with the flush that stores its last event (_flush)."""
        if not job.dependencies:
            job.dependencies = _NO_DEPS  # an empty set costs 216 bytes
        if not job.exceptions:
            job.exceptions = _NONE
        job.waiters = _NONE  # (all answered; a wait on an inactive job is answered at once)
        if job.R is not None and self.broker.kvs.exists("primary", kvs_dir(job.id) + ".R"):
            job.R = None  # read back by R_of() (the KVS has it, with its JGF)
        if job.annotations:
            try:
                key = orjson.dumps(job.annotations)
            except TypeError:
                return
            shared = self._annotation_cache.get(key)
            if shared is None:
                if len(self._annotation_cache) >= 256:
                    self._annotation_cache.pop(next(iter(self._annotation_cache)))
                shared = self._annotation_cache[key] = job.annotations
            job.annotations = shared  # one dict for jobs with the same (sched) annotations

    def R_of(self, job: Job) -> dict | None:
        """A job's R without its JGF (`scheduling`): the job manager's copy while the job
        is active, the KVS's once it is inactive."""
        if job.R is not None or job.active:
            return job.R
        try:
            return _redact_R(self.broker.kvs.lookup_json("primary", kvs_dir(job.id) + ".R"))
        except (FluxError, AttributeError):
            return None

    def _purge(self) -> None:
        now = time.time()
        while len(self.inactive) > self.inactive_num_limit:
            self._purge_one(next(iter(self.inactive)))
        while self.inactive:
            jobid, job = next(iter(self.inactive.items()))
            if now - job.times.get("t_inactive", now) <= self.inactive_age_limit:
                break
            self._purge_one(jobid)

    def _purge_one(self, jobid: int) -> None:
        self.inactive.pop(jobid, None)
        # prune: the job's parent directories go too once empty (else one per ~job stays)
        self._ops.append({"key": kvs_dir(jobid), "flags": 0, "dirent": None, "prune": True})
        for cb in self.listeners:
            cb(None, {"name": "purge", "id": jobid})
        self._schedule_flush()

    def _shared(self, jobspec: dict) -> dict:
        """One dict for identical (redacted) jobspecs: a bulk submission of a million
        copies of a job keeps one parsed jobspec, not a million. Nothing edits a job's
        jobspec in place (job-list copies before applying a jobspec-update)."""
        try:
            key = orjson.dumps(jobspec)
        except TypeError:
            return jobspec
        shared = self._jobspec_cache.get(key)
        if shared is not None:
            return shared
        if len(self._jobspec_cache) >= 256:
            self._jobspec_cache.pop(next(iter(self._jobspec_cache)))
        self._jobspec_cache[key] = jobspec
        return jobspec

    # ========================================================== submission
    async def submit(self, jobspec: dict, J: str, userid: int, urgency: int, flags: int) -> Job:
        """Create a job from a validated jobspec; returns once it is stored."""
        self._queue_submit_check(jobspec)
        jobid = self.next_id()
        now = time.time()
        job = Job(id=jobid, userid=userid, urgency=urgency, flags=flags, t_submit=now,
                  jobspec=jobspec)
        if self.jobtap is not None:
            try:
                self.jobtap.validate(job)
            except FluxError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin's rejection, with its message
                raise FluxError(errno.EINVAL, str(exc)) from None
        d = kvs_dir(jobid)
        self._ops.append({"key": d + ".J", "flags": 0, "raw": J.encode()})
        self._ops.append({"key": d + ".jobspec", "flags": 0, "raw": orjson.dumps(jobspec)})
        # as flux-core's job manager, keep the jobspec without its environment: exec reads
        # the whole one from the KVS when it starts the job's shells
        _redact(jobspec)
        job.jobspec = self._shared(jobspec)
        self.jobs[jobid] = job
        self.max_jobid = max(self.max_jobid, jobid)
        self.post(job, "submit", {"userid": userid, "urgency": urgency, "flags": flags, "version": 1})
        await self.stored()
        if job.state == NEW:
            self.post(job, "validate")
        return job

    # ================================================================ RPCs
    def _job(self, msg, p) -> Job:
        jobid = require(p, "id", int, msg.topic)
        job = self.jobs.get(jobid) or self.inactive.get(jobid)
        if job is None:
            raise FluxError(errno.ENOENT, f"unknown job id {jobid}")
        if not (msg.rolemask & ROLE_OWNER) and job.userid != msg.userid:
            raise FluxError(errno.EPERM, f"job {jobid} belongs to another user")
        return job

    @method("raise")
    def raise_(self, msg):
        p = payload_of(msg)
        job = self._job(msg, p)
        sev = p.get("severity", 0)
        if not isinstance(sev, int) or not 0 <= sev <= 7:
            raise FluxError(errno.EINVAL, "severity must be an integer 0-7")
        etype = p.get("type", "cancel")
        if not isinstance(etype, str) or not etype or " " in etype:
            raise FluxError(errno.EINVAL, "exception type must be a non-empty word")
        if not job.active:
            raise FluxError(errno.EINVAL, f"job {job.id} is inactive")
        ctx = {"type": etype, "severity": sev, "userid": msg.userid, "note": str(p.get("note", ""))}
        self.post(job, "exception", ctx)
        return {}

    @method("kill")
    def kill(self, msg):
        p = payload_of(msg)
        job = self._job(msg, p)
        signum = p.get("signum", 15)
        if not isinstance(signum, int) or not 0 < signum < 65:
            raise FluxError(errno.EINVAL, f"invalid signal number {signum}")
        if job.state == RUN and job.delegate is not None:
            job.delegate.kill(job, signum)
            return {}
        if job.state != RUN or not job.exec_running:
            raise FluxError(errno.EINVAL, f"job {job.id} is not running")
        self.broker.send_internal_noresponse(f"{self.exec_service}.kill", {"id": job.id, "signum": signum})
        return {}

    @method("urgency")
    def urgency(self, msg):
        p = payload_of(msg)
        job = self._job(msg, p)
        urg = require(p, "urgency", int, msg.topic)
        if not 0 <= urg <= 31:
            raise FluxError(errno.EINVAL, f"urgency {urg} is not 0-31")
        if urg > 16 and not (msg.rolemask & ROLE_OWNER):
            raise FluxError(errno.EPERM, "only the instance owner can set urgency above 16")
        if job.state not in (NEW, DEPEND, PRIORITY, SCHED):
            raise FluxError(errno.EINVAL, f"urgency of job {job.id} cannot change once it has started")
        old = job.urgency
        job.urgency = urg
        self.post(job, "urgency", {"urgency": urg, "userid": msg.userid})
        return {"old_urgency": old}

    @method("events-journal", streaming=True)
    def events_journal(self, msg):
        p = payload_of(msg)
        if not (msg.rolemask & ROLE_OWNER):
            raise FluxError(errno.EPERM, "the job journal is restricted to the instance owner")
        if p.get("full"):
            for job in list(self.inactive.values()) + list(self.jobs.values()):
                resp = {"id": job.id, "events": list(job.eventlog),
                        "jobspec": job.jobspec if job.jobspec is not None else self._stored_jobspec(job)}
                R = self.R_of(job)
                if R is not None:
                    resp["R"] = R
                self.respond(msg, resp)
            self.respond(msg, {"id": -1, "events": []})
        self.journal_readers[id(msg)] = msg
        return NOREPLY

    def stored_eventlog(self, jobid: int) -> list[dict]:
        """A job's primary eventlog entries as the KVS has them ([] if purged)."""
        try:
            return eventlog.decode(self.broker.kvs.lookup_value("primary", kvs_dir(jobid) + ".eventlog"))
        except (FluxError, ValueError):
            return []

    def _stored_jobspec(self, job: Job) -> dict | None:
        """An inactive job's jobspec from the KVS, redacted as the journal sends it."""
        try:
            jobspec = self.broker.kvs.lookup_json("primary", kvs_dir(job.id) + ".jobspec")
        except (FluxError, AttributeError):
            return None
        _redact(jobspec)
        return jobspec

    @method("sched-hello", streaming=True, owner_only=True)
    def sched_hello(self, msg):
        for job in self.jobs.values():
            if job.has_resources:
                self.respond(msg, {"id": job.id, "priority": job.priority, "userid": job.userid,
                                   "t_submit": job.t_submit, "R": job.R})
        self.respond_error(msg, errno.ENODATA)
        return NOREPLY

    @method("sched-ready", owner_only=True)
    def sched_ready_(self, msg):
        p = payload_of(msg)
        mode = p.get("mode", "unlimited")
        if mode == "limited":
            limit = p.get("limit")
            if not isinstance(limit, int) or not 0 < limit < 2 ** 31:
                raise FluxError(errno.EPROTO, "sched-ready: limited mode needs limit 1..2^31-1")
            self.sched_limit = limit
        elif mode == "unlimited":
            self.sched_limit = 0
        else:
            raise FluxError(errno.EPROTO, f"sched-ready: unknown mode '{mode}'")
        self.sched_ready = True
        self.sched_up.set()
        asyncio.get_running_loop().call_soon(self._request_allocs)
        return {"count": len(self.pending)}

    @method("exec-hello", owner_only=True)
    def exec_hello(self, msg):
        self.exec_service = require(payload_of(msg), "service", str, msg.topic)
        return {}

    @method("memo")
    def memo(self, msg):
        p = payload_of(msg)
        job = self._job(msg, p)
        memo = require(p, "memo", dict, msg.topic)
        self.post(job, "memo", memo)
        return {}

    @method("getinfo")
    def getinfo(self, msg):
        return {"max_jobid": self.max_jobid}

    @method("wait")
    def wait(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        if not (msg.rolemask & ROLE_OWNER):
            raise FluxError(errno.EPERM, "job-manager.wait is restricted to the instance owner")
        if jobid == ANY_JOB:
            return self._wait_any(msg)
        job = self.jobs.get(jobid) or self.inactive.get(jobid)
        if job is None:
            raise FluxError(errno.ECHILD, f"job {jobid} does not exist or was already waited for")
        if not job.flags & 4:
            raise FluxError(errno.EINVAL, f"job {jobid} was not submitted with the waitable flag")
        if job.active:
            job.waiters.append(msg)
            return NOREPLY
        self._answer_wait(msg, job)
        return NOREPLY

    def _answer_wait(self, msg, job: Job) -> None:
        if job.success:
            errstr = ""
        elif job.exception is not None:
            errstr = f"Fatal exception type={job.exception.get('type')} {job.exception.get('note', '')}".rstrip()
        else:
            st = job.status or 0
            errstr = (f"task(s) exited with exit code {st >> 8}" if st & 0x7F == 0
                      else f"task(s) were killed by signal {st & 0x7F}")
        job.flags &= ~4  # a job is waited for once
        self.respond(msg, {"id": job.id, "success": job.success, "errstr": errstr})

    @method("drain", owner_only=True)
    async def drain(self, msg):
        if self.jobs:
            f = asyncio.get_running_loop().create_future()
            self.drain_waiters.append(f)
            await f
        return {}

    @method("idle", owner_only=True)
    async def idle(self, msg):
        f = asyncio.get_running_loop().create_future()
        self.idle_waiters.append(f)
        self._check_drain()
        await f
        return {"pending": sum(1 for j in self.jobs.values() if j.state in (DEPEND, PRIORITY, SCHED))}

    def _check_drain(self) -> None:
        if not self.jobs:
            for f in self.drain_waiters:
                if not f.done():
                    f.set_result(None)
            self.drain_waiters.clear()
            # a burst of jobs is over: give the memory it used back to the system
            trim_memory()
        # (scanning the active jobs on every retire would be quadratic in the queue length)
        if self.idle_waiters and not any(j.state in (RUN, CLEANUP) or j.alloc_pending
                                         for j in self.jobs.values()):
            for f in self.idle_waiters:
                if not f.done():
                    f.set_result(None)
            self.idle_waiters.clear()

    def disconnect(self, sender: str) -> None:
        for k, m in list(self.journal_readers.items()):
            if m.sender == sender:
                del self.journal_readers[k]
        for job in self.jobs.values():
            if job.waiters:
                job.waiters = [w for w in job.waiters if w.sender != sender]
        self.wait_any = [w for w in self.wait_any if w.sender != sender]

    @method("cancel")
    def cancel(self, msg):
        return self.events_journal_cancel(msg)

    @method("events-journal-cancel")  # the topic flux-core's JournalConsumer.stop() sends
    def events_journal_cancel(self, msg):
        tag = payload_of(msg).get("matchtag")
        for k, m in list(self.journal_readers.items()):
            if m.sender == msg.sender and m.matchtag == tag:
                del self.journal_readers[k]
                self.respond_error(m, errno.ENODATA)
        return NOREPLY

    # ================================================ tool RPCs (flux cancel/job/queue)
    def _wait_any(self, msg):
        for job in self.inactive.values():
            if job.flags & 4:
                self._answer_wait(msg, job)
                return NOREPLY
        if not any(j.flags & 4 for j in self.jobs.values()):
            raise FluxError(errno.ECHILD, "there are no waitable jobs")
        self.wait_any.append(msg)
        return NOREPLY

    def _select(self, msg, p: dict) -> list[Job]:
        """Active jobs of `userid` (USERID_ANY: all users) whose state is in `states`."""
        userid = p.get("userid", msg.userid)
        states = p.get("states", 0) or 62
        if not isinstance(userid, int) or not isinstance(states, int):
            raise FluxError(errno.EPROTO, f"{msg.topic}: userid and states must be integers")
        if not (msg.rolemask & ROLE_OWNER) and userid != msg.userid:
            raise FluxError(errno.EPERM, "guests may only target their own jobs")
        return [j for j in self.jobs.values()
                if (userid == USERID_ANY or j.userid == userid) and STATE_BITS[j.state] & states]

    @method("raiseall")
    def raiseall(self, msg):
        p = payload_of(msg)
        sev = p.get("severity", 7)
        etype = p.get("type")
        if not isinstance(sev, int) or not 0 <= sev <= 7:
            raise FluxError(errno.EINVAL, "severity must be an integer 0-7")
        if not isinstance(etype, str) or not etype or " " in etype:
            raise FluxError(errno.EINVAL, "exception type must be a non-empty word")
        jobs = self._select(msg, p)
        if not p.get("dry_run"):
            ctx = {"type": etype, "severity": sev, "userid": msg.userid, "note": str(p.get("note", ""))}
            for job in jobs:
                if job.active:
                    self.post(job, "exception", dict(ctx))
        return {"count": len(jobs), "errors": 0}

    @method("killall")
    def killall(self, msg):
        p = payload_of(msg)
        signum = p.get("signum", 15)
        if not isinstance(signum, int) or not 0 < signum < 65:
            raise FluxError(errno.EINVAL, f"invalid signal number {signum}")
        jobs = [j for j in self._select(msg, dict(p, states=16)) if j.exec_running]
        if not p.get("dry_run"):
            for job in jobs:
                self.broker.send_internal_noresponse(f"{self.exec_service}.kill",
                                                     {"id": job.id, "signum": signum})
        return {"count": len(jobs), "errors": 0}

    @method("purge", owner_only=True)
    def purge(self, msg):
        p = payload_of(msg)
        age, num = p.get("age_limit", -1), p.get("num_limit", -1)
        batch = p.get("batch", 50)
        if not all(isinstance(v, (int, float)) for v in (age, num, batch)) or batch < 1:
            raise FluxError(errno.EPROTO, "purge: age_limit, num_limit, batch must be numbers")
        now = time.time()
        victims = []
        n = len(self.inactive)
        for jobid, job in self.inactive.items():  # oldest first
            if len(victims) >= batch:
                break
            too_many = num >= 0 and n - len(victims) > num
            too_old = age >= 0 and now - job.times.get("t_inactive", now) > age
            if not (too_many or too_old):
                break
            victims.append(jobid)
        if p.get("force"):
            for jobid in victims:
                self._purge_one(jobid)
        return {"count": len(victims)}

    @method("purge-id", owner_only=True)
    def purge_id(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        if jobid in self.jobs:
            raise FluxError(errno.EINVAL, "cannot purge an active job")
        if jobid not in self.inactive:
            raise FluxError(errno.ENOENT, f"unknown job id {jobid}")
        if p.get("force"):
            self._purge_one(jobid)
        return {"count": 1}

    @method("stats-get")
    def stats_get(self, msg):
        return {"active_jobs": len(self.jobs), "inactive_jobs": len(self.inactive)}

    @method("history.get")
    def history_get(self, msg):
        """The caller's most recently submitted job ids, newest first, sliced by a
        Python-style `slice` string such as "[:1]" (flux job last)."""
        text = payload_of(msg).get("slice", "[:1]")
        try:
            if not (isinstance(text, str) and text.startswith("[") and text.endswith("]")):
                raise ValueError
            parts = [int(x) if x.strip() else None for x in text[1:-1].split(":")]
            sl = slice(*parts) if len(parts) > 1 else slice(parts[0], None if parts[0] == -1 else parts[0] + 1)
        except (ValueError, TypeError):
            raise FluxError(errno.EINVAL, f"invalid slice '{text}'") from None
        ids = sorted((j.id for j in (*self.jobs.values(), *self.inactive.values())
                      if j.userid == msg.userid), reverse=True)
        return {"jobs": ids[sl]}

    def _queue(self, name):
        """The state dict of queue `name` (None: the anonymous queue)."""
        if self.named_queues:
            if name is None:
                raise FluxError(errno.EINVAL, "a named queue is required")
            q = self.named_queues.get(name)
            if q is None:
                raise FluxError(errno.EINVAL, f"'{name}' is not a valid queue")
            return q
        if name is not None:
            raise FluxError(errno.EINVAL, f"'{name}' is not a valid queue")
        return None

    def _queue_started(self, job: Job) -> bool:
        q = self.named_queues.get(job.system("queue")) if self.named_queues else None
        return q["start"] if q is not None else self.queue_started

    def _queue_submit_check(self, jobspec: dict) -> None:
        try:
            name = jobspec["attributes"]["system"].get("queue")
        except (KeyError, TypeError, AttributeError):
            name = None
        if self.named_queues and name in self.named_queues:
            q = self.named_queues[name]
            if not q["enable"]:
                raise FluxError(errno.EINVAL, f"job submission to {name} is disabled: "
                                              f"{q.get('disable_reason')}")
        elif self.named_queues and name is not None:
            raise FluxError(errno.EINVAL, f"'{name}' is not a valid queue")
        elif not self.queue_enabled:
            raise FluxError(errno.EINVAL, f"job submission is disabled: {self.queue_disable_reason}")

    def _queue_targets(self, msg, p: dict) -> list:
        name = p.get("name")
        if name is None and self.named_queues:
            if not p.get("all"):
                raise FluxError(errno.EINVAL, "Use --all to apply this command to all queues")
            return list(self.named_queues.values())
        q = self._queue(name)
        return [q] if q is not None else [None]

    @method("alloc-query")
    def alloc_query(self, msg):
        return {"queue_length": len(self.pending), "alloc_pending": self.alloc_outstanding,
                "running": sum(1 for j in self.jobs.values() if j.state in (RUN, CLEANUP))}

    @method("queue-list")
    def queue_list(self, msg):
        return {"queues": list(self.named_queues)}

    @method("queue-status")
    def queue_status(self, msg):
        q = self._queue(payload_of(msg).get("name"))
        if q is None:
            q = {"enable": self.queue_enabled, "start": self.queue_started,
                 "disable_reason": self.queue_disable_reason, "stop_reason": self.queue_stop_reason}
        out = {"enable": q["enable"], "start": q["start"]}
        if not self.sched_ready:
            out["start"] = False
            out["stop_reason"] = "Scheduler is offline"
        elif not q["start"] and q.get("stop_reason"):
            out["stop_reason"] = q["stop_reason"]
        if not q["enable"]:
            out["disable_reason"] = q.get("disable_reason")
        return out

    @method("queue-enable", owner_only=True)
    def queue_enable(self, msg):
        p = payload_of(msg)
        enable = p.get("enable")
        if not isinstance(enable, bool):
            raise FluxError(errno.EPROTO, "queue-enable: enable must be a boolean")
        reason = p.get("reason")
        if not enable and not reason:
            raise FluxError(errno.EINVAL, "reason is required for disable")
        for q in self._queue_targets(msg, p):
            if q is None:
                self.queue_enabled = enable
                self.queue_disable_reason = None if enable else reason
            else:
                q["enable"] = enable
                q["disable_reason"] = None if enable else reason
        return {}

    @method("queue-start", owner_only=True)
    def queue_start(self, msg):
        p = payload_of(msg)
        start = p.get("start")
        if not isinstance(start, bool):
            raise FluxError(errno.EPROTO, "queue-start: start must be a boolean")
        reason = p.get("reason")
        for q in self._queue_targets(msg, p):
            if q is None:
                self.queue_started = start
                self.queue_stop_reason = None if start else reason
            else:
                q["start"] = start
                q["stop_reason"] = None if start else reason
        if start:
            self._request_allocs()
        else:  # stopping withdraws outstanding alloc requests (the job goes back to pending)
            for job in list(self.jobs.values()):
                if job.alloc_pending and not self._queue_started(job):
                    self.broker.send_internal_noresponse("sched.cancel", {"id": job.id})
        return {}
