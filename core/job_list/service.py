"""The `job-list` service (RFC 43; SPEC 7.8) on rank 0.

It is fed in-process by the job manager (`JobManager.listeners`), so it sees every
event of every job as it is posted, without reading the KVS. Jobs are indexed by
state so a listing walks only the lists it needs:

- pending (NEW..SCHED): by priority (high first), then submit order; the sorted view
  is cached until a pending job arrives, leaves or changes priority
- running (RUN, CLEANUP): newest first (the dict keeps the order jobs started)
- inactive: most recently finished first (the dict keeps the order jobs finished),
  so `since` stops the walk at the first job that finished too early
"""

from __future__ import annotations

import errno
from typing import Any

from flux.core.broker.service import NOREPLY, Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.job import states as S
from flux.core.job_list.constraint import compile_constraint
from flux.core.job_list.jobdata import ATTR_SET, ATTRS, PENDING_STATES, JobData
from flux.core.message import ROLE_OWNER

STREAM_CHUNK = 1000  # jobs per response when the caller asked for a stream
_STAT_KEYS = ("new", "depend", "priority", "sched", "run", "cleanup", "inactive")
_STATE_KEY = {S.NEW: "new", S.DEPEND: "depend", S.PRIORITY: "priority", S.SCHED: "sched",
              S.RUN: "run", S.CLEANUP: "cleanup", S.INACTIVE: "inactive"}
_RESULT_KEY = {S.COMPLETED: "successful", S.FAILED: "failed", S.CANCELED: "canceled",
               S.TIMEOUT: "timeout"}


class Stats:
    """Job counts by state and by result (what `job-list.job-stats` reports)."""

    __slots__ = ("states", "results", "purged")

    def __init__(self) -> None:
        self.states = dict.fromkeys(_STAT_KEYS, 0)
        self.results = dict.fromkeys(_RESULT_KEY.values(), 0)
        self.purged = 0

    def to_dict(self) -> dict:
        js = dict(self.states)
        js["total"] = sum(self.states.values())
        return {"job_states": js, **self.results, "inactive_purged": self.purged}


def _attrs(p: dict, topic: str) -> tuple[str, ...]:
    attrs = require(p, "attrs", list, topic)
    out: list[str] = []
    for a in attrs:
        if not isinstance(a, str):
            raise FluxError(errno.EINVAL, f"{topic}: attrs must be strings, not {a!r}")
        if a == "all":
            out.extend(ATTRS)
        elif a in ATTR_SET:
            out.append(a)
        elif a != "id":
            raise FluxError(errno.EINVAL, f"{a} is not a valid attribute")
    return tuple(dict.fromkeys(out))


class JobListService(Service):
    name = "job-list"

    def __init__(self, broker):
        super().__init__(broker)
        self.jobs: dict[int, JobData] = {}
        self.pending: dict[int, JobData] = {}
        self.running: dict[int, JobData] = {}
        self.inactive: dict[int, JobData] = {}
        self._pending_sorted: list[JobData] | None = None
        self.stats = Stats()
        self.queue_stats: dict[str, Stats] = {}
        self.waiters: dict[int, list[tuple[Any, tuple[str, ...], int]]] = {}
        conf = broker.conf.get("job-list", {}) if isinstance(broker.conf, dict) else {}
        access = broker.conf.get("access", {}) if isinstance(broker.conf, dict) else {}
        self.private = bool(conf.get("private-mode", access.get("private-mode", False)))
        self.jm = None

    async def start(self) -> None:
        jm = getattr(self.broker, "job_manager", None)
        if jm is None:
            self.broker.log(3, "job-list: no job manager on this broker; job lists stay empty")
            return
        self.jm = jm
        # jobs the job manager already holds (e.g. reloaded at restart), oldest first
        for job in list(jm.inactive.values()) + list(jm.jobs.values()):
            for e in job.eventlog:
                self._event(job, e)
        jm.listeners.append(self.on_event)

    async def stop(self) -> None:
        if self.jm is not None and self.on_event in self.jm.listeners:
            self.jm.listeners.remove(self.on_event)

    # ============================================================ indexing
    def on_event(self, job, e: dict) -> None:
        """JobManager listener: never raises (it runs inside the job manager's post())."""
        try:
            if job is None:
                if e.get("name") == "purge":
                    self._purge(e.get("id"))
                return
            self._event(job, e)
        except Exception as exc:  # noqa: BLE001 - a listing bug must not stop jobs
            self.broker.log_exception("job-list: event handling failed", exc)

    def _stats_for(self, jd: JobData) -> list[Stats]:
        if jd.queue is None:
            return [self.stats]
        qs = self.queue_stats.get(jd.queue)
        if qs is None:
            qs = self.queue_stats[jd.queue] = Stats()
        return [self.stats, qs]

    def _event(self, job, e: dict) -> None:
        name = e.get("name")
        if name == "invalidate":  # the job is withdrawn as if never submitted
            self._purge(job.id, count=False)
            return
        jd = self.jobs.get(job.id)
        if jd is None:
            if name != "submit":
                return  # events of a job we never saw submitted (cannot happen in-process)
            jd = self.jobs[job.id] = JobData(job.id, job)
            self.pending[job.id] = jd
            self._pending_sorted = None
            for st in self._stats_for(jd):
                st.states["new"] += 1
        old_queue = jd.queue
        old_prio = jd.priority
        prev = jd.apply(e)
        if jd.queue != old_queue:  # a jobspec-update moved the job to another queue
            self._move_queue_stats(jd, old_queue)
        new = jd.state
        if new != prev:
            self._move(jd, prev, new)
        elif jd.priority != old_prio and jd.id in self.pending:
            self._pending_sorted = None
        if new != prev and jd.id in self.waiters:
            self._wake(jd)

    def _move_queue_stats(self, jd: JobData, old_queue: str | None) -> None:
        key = _STATE_KEY[jd.state]
        if old_queue is not None and old_queue in self.queue_stats:
            self.queue_stats[old_queue].states[key] -= 1
        if jd.queue is not None:
            qs = self.queue_stats.setdefault(jd.queue, Stats())
            qs.states[key] += 1

    def _move(self, jd: JobData, prev: int, new: int) -> None:
        for st in self._stats_for(jd):
            st.states[_STATE_KEY[prev]] -= 1
            st.states[_STATE_KEY[new]] += 1
            if new == S.INACTIVE and jd.result in _RESULT_KEY:
                st.results[_RESULT_KEY[jd.result]] += 1
        if prev & PENDING_STATES and not new & PENDING_STATES:
            self.pending.pop(jd.id, None)
            self._pending_sorted = None
        elif new & PENDING_STATES:
            self._pending_sorted = None  # priority may have changed with the state
        if new & S.RUNNING and not prev & S.RUNNING:
            self.running[jd.id] = jd
        elif prev & S.RUNNING and not new & S.RUNNING:
            self.running.pop(jd.id, None)
        if new == S.INACTIVE:
            self.inactive[jd.id] = jd

    def _purge(self, jobid: Any, count: bool = True) -> None:
        jd = self.jobs.pop(jobid, None)
        if jd is None:
            return
        self.inactive.pop(jobid, None)
        self.pending.pop(jobid, None)
        self.running.pop(jobid, None)
        for st in self._stats_for(jd):
            st.states[_STATE_KEY[jd.state]] -= 1
            if jd.state == S.INACTIVE and jd.result in _RESULT_KEY:
                st.results[_RESULT_KEY[jd.result]] -= 1
            st.purged += count
        for msg, _attrs, _state in self.waiters.pop(jobid, []):
            self.respond_error(msg, errno.ENOENT, f"job {jobid} no longer exists")

    def pending_sorted(self) -> list[JobData]:
        if self._pending_sorted is None:
            self._pending_sorted = sorted(self.pending.values(),
                                          key=lambda jd: (-jd.sort_priority, jd.t_submit, jd.id))
        return self._pending_sorted

    # ============================================================== access
    def _visible(self, msg) -> int | None:
        """The only userid a caller may see (private mode guests), else None."""
        if self.private and not (msg.rolemask & ROLE_OWNER):
            return msg.userid
        return None

    # ================================================================ RPCs
    @method("list")
    def list_(self, msg):
        p = payload_of(msg)
        t = msg.topic
        max_entries = require(p, "max_entries", int, t)
        if max_entries < 0:
            raise FluxError(errno.EINVAL, f"{t}: max_entries must be >= 0")
        attrs = _attrs(p, t)
        since = p.get("since", 0.0)
        if since is None:
            since = 0.0
        if not isinstance(since, int | float) or isinstance(since, bool) or since < 0:
            raise FluxError(errno.EINVAL, f"{t}: since must be a non-negative number")
        match, mask = compile_constraint(p.get("constraint"))
        only_uid = self._visible(msg)
        jobs = self.select(match, mask, max_entries, since, only_uid)
        out = [jd.to_dict(attrs) for jd in jobs]
        if not msg.streaming:
            return {"jobs": out}
        for i in range(0, len(out), STREAM_CHUNK):
            chunk: dict[str, Any] = {"jobs": out[i:i + STREAM_CHUNK]}
            if i == 0:
                chunk["version"] = 1
            self.respond(msg, chunk)
        if not out:
            self.respond(msg, {"jobs": [], "version": 1})
        self.respond_error(msg, errno.ENODATA)
        return NOREPLY

    def select(self, match, mask: int, max_entries: int = 0, since: float = 0.0,
               only_uid: int | None = None) -> list[JobData]:
        """Matching jobs in RFC 43 order: pending, running (newest first), inactive
        (most recently finished first, finished after `since`)."""
        out: list[JobData] = []
        limit = max_entries or None

        def take(it) -> bool:
            for jd in it:
                if only_uid is not None and jd.userid != only_uid:
                    continue
                if match(jd):
                    out.append(jd)
                    if limit is not None and len(out) >= limit:
                        return True
            return False

        if mask & PENDING_STATES and self.pending and take(self.pending_sorted()):
            return out
        if mask & S.RUNNING and self.running and take(reversed(self.running.values())):
            return out
        if mask & S.INACTIVE and self.inactive:
            def recent():
                for jd in reversed(self.inactive.values()):
                    if since and jd.t_inactive <= since:
                        return
                    yield jd
            take(recent())
        return out

    @method("list-id")
    def list_id(self, msg):
        p = payload_of(msg)
        t = msg.topic
        jobid = require(p, "id", int, t)
        attrs = _attrs(p, t)
        state = p.get("state", 0)
        if not isinstance(state, int) or isinstance(state, bool) or state < 0 or state & ~0x7F:
            raise FluxError(errno.EINVAL, f"{t}: state must be a job state mask")
        jd = self.jobs.get(jobid)
        if jd is None:
            raise FluxError(errno.ENOENT, f"JobID {jobid} not found")
        only = self._visible(msg)
        if only is not None and jd.userid != only:
            raise FluxError(errno.EPERM, f"job {jobid} belongs to another user")
        if state and not (jd.states_mask & state) and jd.state != S.INACTIVE:
            self.waiters.setdefault(jobid, []).append((msg, attrs, state))
            return NOREPLY
        return {"job": jd.to_dict(attrs)}

    def _wake(self, jd: JobData) -> None:
        keep = []
        for msg, attrs, state in self.waiters.get(jd.id, []):
            if jd.states_mask & state or jd.state == S.INACTIVE:
                self.respond(msg, {"job": jd.to_dict(attrs)})
            else:
                keep.append((msg, attrs, state))
        if keep:
            self.waiters[jd.id] = keep
        else:
            self.waiters.pop(jd.id, None)

    @method("list-attrs")
    def list_attrs(self, msg):
        return {"attrs": list(ATTRS)}

    @method("job-stats")
    def job_stats(self, msg):
        out = self.stats.to_dict()
        out["queues"] = [{"name": q, **st.to_dict()} for q, st in sorted(self.queue_stats.items())]
        return out

    def disconnect(self, sender: str) -> None:
        for jobid in list(self.waiters):
            keep = [w for w in self.waiters[jobid] if w[0].sender != sender]
            if keep:
                self.waiters[jobid] = keep
            else:
                del self.waiters[jobid]
