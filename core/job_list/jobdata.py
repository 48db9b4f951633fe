"""One job as job-list sees it: the RFC 43 attributes, kept up to date event by event.

Everything a listing needs is computed when the event that changes it arrives (the
jobspec summary at submit, R at alloc, the result at clean), so a list request only
copies fields. Annotations are read live from the job manager's job, since scheduler
annotations change without an eventlog event.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from flux.core.job import states as S
from flux.core.util import hostlist, idset

PENDING_STATES = S.NEW | S.PENDING
ALL_STATES = S.NEW | S.ACTIVE | S.INACTIVE

#: attributes that `job-list.list` can return (RFC 43, plus t_priority and t_sched)
ATTRS: tuple[str, ...] = (
    "userid", "urgency", "priority", "t_submit", "t_depend", "t_priority", "t_sched", "t_run",
    "t_cleanup", "t_inactive", "state", "name", "cwd", "queue", "project", "bank", "ntasks",
    "ncores", "nnodes", "ranks", "nodelist", "duration", "expiration", "success", "result",
    "waitstatus", "exception_occurred", "exception_type", "exception_severity",
    "exception_note", "annotations", "dependencies",
)
ATTR_SET = frozenset(ATTRS)

_NONE: frozenset = frozenset()  # (each frozenset() call makes a new 216-byte object)
_shared: dict = {}


def _share(value: Any) -> Any:
    """One object for equal rank sets, host sets, ranks and nodelist strings: most jobs
    of an instance run on the same few nodes, and every job keeps these."""
    got = _shared.get(value)
    if got is None:
        if len(_shared) >= 4096:
            _shared.clear()
        got = _shared[value] = value
    return got


# time attribute set when a state is entered
_STATE_TIME = {S.DEPEND: "t_depend", S.PRIORITY: "t_priority", S.SCHED: "t_sched",
               S.RUN: "t_run", S.CLEANUP: "t_cleanup", S.INACTIVE: "t_inactive"}


def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _set_path(d: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = value


def _count(c: Any) -> int:
    if isinstance(c, int) and not isinstance(c, bool):
        return c
    if isinstance(c, dict):
        v = c.get("min", 1)
        return v if isinstance(v, int) else 1
    if isinstance(c, str):  # RFC 45 range string: its minimum
        head = c.split(",")[0].split("-")[0].split(":")[0]
        return int(head) if head.isdigit() else 1
    return 1


def jobspec_summary(js: Any) -> dict:
    """Name, cwd, queue, project, bank, duration, ntasks, ncores, nnodes of a jobspec.

    Values that cannot be known before R (per-node task counts, node-exclusive cores)
    are None, with what is needed to compute them once R arrives."""
    out: dict[str, Any] = {}
    system = _get(js, "attributes", "system")
    if not isinstance(system, dict):
        system = {}
    name = _get(system, "job", "name")
    if not isinstance(name, str):
        # no job name: the basename of the command's arg0 (a trailing '/' keeps it whole)
        tasks = _get(js, "tasks")
        cmd = _get(tasks[0], "command") if isinstance(tasks, list) and tasks else None
        if isinstance(cmd, list) and cmd and isinstance(cmd[0], str):
            name = os.path.basename(cmd[0]) or cmd[0]
        else:
            name = None
    out["name"] = name
    for key in ("cwd", "queue", "project", "bank"):
        v = system.get(key)
        out[key] = v if isinstance(v, str) else None
    dur = system.get("duration", 0.0)
    out["duration"] = float(dur) if isinstance(dur, int | float) and not isinstance(dur, bool) else 0.0
    # resource shape (flux-core jj_get_counts semantics)
    nnodes = nslots = slot_size = 0
    exclusive = False
    try:
        stack = [(r, 1) for r in js["resources"]]
        while stack:
            r, _ = stack.pop()
            t, c = r.get("type"), _count(r.get("count", 1))
            if t == "node":
                nnodes, exclusive = c, bool(r.get("exclusive"))
            elif t == "slot":
                nslots = c
            elif t == "core":
                slot_size = c
            stack.extend((w, 1) for w in r.get("with") or [])
        if nnodes:
            nslots *= nnodes
        count = js["tasks"][0]["count"]
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        out.update(ntasks=None, ncores=None, nnodes=None, per_node=0, per_core=0)
        return out
    out["nnodes"] = nnodes or None
    out["ncores"] = None if (nnodes and exclusive) else nslots * slot_size
    out["per_node"] = out["per_core"] = 0
    per = _get(system, "shell", "options", "per-resource")
    ptype = per.get("type") if isinstance(per, dict) else None
    pcount = per.get("count", 1) if isinstance(per, dict) else 1
    if not isinstance(pcount, int) or pcount < 1:
        pcount = 1
    if ptype == "node":
        if nnodes:
            out["ntasks"] = nnodes * pcount
        else:
            out["ntasks"], out["per_node"] = None, pcount
    elif ptype == "core":
        if not nnodes:
            out["ntasks"] = nslots * slot_size * pcount
        else:
            out["ntasks"], out["per_core"] = None, pcount
    elif isinstance(count, dict) and isinstance(count.get("total"), int):
        out["ntasks"] = count["total"]
    else:
        out["ntasks"] = nslots
    return out


class JobData:
    """A job's listable state. `apply()` feeds it the job's eventlog entries in order."""

    __slots__ = (
        "id", "userid", "urgency", "priority", "t_submit", "t_depend", "t_priority", "t_sched",
        "t_run", "t_cleanup", "t_inactive", "state", "states_mask", "name", "cwd", "queue",
        "project", "bank", "ntasks", "ncores", "nnodes", "ranks", "nodelist", "duration",
        "expiration", "success", "result", "waitstatus", "exc_occurred", "exc_severity",
        "exc_type", "exc_note", "dependencies", "job", "jobspec", "has_jobspec", "per_node", "per_core",
        "rankset", "hostset",
    )

    def __init__(self, jobid: int, job: Any = None):
        self.id = jobid
        self.job = job  # the job manager's Job (live annotations, jobspec, R)
        self.userid = 0xFFFFFFFF
        self.urgency = 16
        self.priority: int | None = None
        self.t_submit = self.t_depend = self.t_priority = self.t_sched = 0.0
        self.t_run = self.t_cleanup = self.t_inactive = 0.0
        self.state = S.NEW
        self.states_mask = S.NEW
        self.name = self.cwd = self.queue = self.project = self.bank = None
        self.ntasks = self.ncores = self.nnodes = None
        self.ranks = self.nodelist = None
        self.rankset: frozenset[int] = _NONE
        self.hostset: frozenset[str] = _NONE
        self.duration = 0.0
        self.expiration: float | None = None
        self.success: bool | None = None
        self.result: int | None = None
        self.waitstatus: int | None = None
        self.exc_occurred = False
        self.exc_severity: int | None = None
        self.exc_type: str | None = None
        self.exc_note: str | None = None
        self.dependencies: list[str] | None = None
        self.jobspec: Any = getattr(job, "jobspec", None)
        self.has_jobspec = False
        self.per_node = self.per_core = 0
        if self.jobspec is not None:
            self._summarize()

    # ------------------------------------------------------------ derivation
    def _summarize(self) -> None:
        s = jobspec_summary(self.jobspec)
        self.name, self.cwd, self.queue = s["name"], s["cwd"], s["queue"]
        self.project, self.bank, self.duration = s["project"], s["bank"], s["duration"]
        if self.nodelist is None:  # R, once known, is more exact than the jobspec
            self.ntasks, self.ncores, self.nnodes = s["ntasks"], s["ncores"], s["nnodes"]
            self.per_node, self.per_core = s["per_node"], s["per_core"]

    def set_R(self, R: Any) -> None:
        """Ranks, nodelist, nnodes, ncores and expiration from an RFC 20 R (bad R: ignored)."""
        try:
            ex = R["execution"]
            ranks: set[int] = set()
            ncores = 0
            for entry in ex["R_lite"]:
                rl = idset.decode(entry["rank"])
                ranks.update(rl)
                ncores += len(rl) * idset.count(entry.get("children", {}).get("core", ""))
            hosts: list[str] = []
            for h in ex.get("nodelist") or []:
                hosts.extend(hostlist.decode(h))
            exp = ex.get("expiration", 0.0) or 0.0
        except (KeyError, TypeError, AttributeError, ValueError):
            return
        self.rankset = _share(frozenset(ranks))
        self.hostset = _share(frozenset(hosts))
        self.ranks = _share(idset.encode(ranks, brackets=True))
        self.nodelist = _share(hostlist.encode(hosts))
        self.nnodes = len(ranks)
        self.ncores = ncores
        self.expiration = float(exp)
        if self.per_node:
            self.ntasks = self.nnodes * self.per_node
        elif self.per_core:
            self.ntasks = ncores * self.per_core

    def _jobspec_update(self, updates: Mapping) -> None:
        if not isinstance(self.jobspec, dict):
            return
        if self.job is not None and self.jobspec is getattr(self.job, "jobspec", None):
            self.jobspec = copy.deepcopy(self.jobspec)  # never edit the job manager's copy
        for key, value in updates.items():
            if isinstance(key, str) and (key.split(".")[0] in ("resources", "tasks", "attributes")):
                _set_path(self.jobspec, key, value)
        self._summarize()

    # ---------------------------------------------------------------- events
    def apply(self, e: Mapping) -> int:
        """Apply one eventlog entry; returns the previous state."""
        name = e.get("name")
        ctx = e.get("context") or {}
        ts = e.get("timestamp", 0.0)
        prev = self.state
        if name == "submit":
            self.userid = ctx.get("userid", self.userid)
            self.urgency = ctx.get("urgency", self.urgency)
            self.t_submit = ts
            return prev
        if name == "priority":
            self.priority = ctx.get("priority", self.priority)
        elif name == "urgency":
            self.urgency = ctx.get("urgency", self.urgency)
        elif name == "exception":
            sev = ctx.get("severity", 0)
            if not self.exc_occurred or (isinstance(sev, int) and sev < (self.exc_severity or 0)):
                self.exc_occurred = True
                self.exc_severity = sev
                self.exc_type = ctx.get("type")
                self.exc_note = ctx.get("note") or None
        elif name == "finish":
            st = ctx.get("status")
            if isinstance(st, int):
                self.waitstatus = st
        elif name == "alloc":
            R = getattr(self.job, "R", None)
            if R is not None:
                self.set_R(R)
        elif name == "resource-update":
            exp = ctx.get("expiration")
            if isinstance(exp, int | float):
                self.expiration = float(exp)
        elif name == "jobspec-update":
            self._jobspec_update(ctx)
        elif name == "dependency-add":
            d = ctx.get("description")
            if d is not None:
                deps = self.dependencies if self.dependencies is not None else []
                if d not in deps:
                    deps.append(d)
                self.dependencies = deps
        elif name == "dependency-remove":
            d = ctx.get("description")
            if self.dependencies and d in self.dependencies:
                self.dependencies.remove(d)
        new = S.next_state(prev, name, ctx)
        if new != prev:
            self.state = new
            self.states_mask |= new
            tkey = _STATE_TIME.get(new)
            if tkey is not None:
                setattr(self, tkey, ts)
            if new == S.INACTIVE:
                self._finalize()
        return prev

    def _finalize(self) -> None:
        # nothing updates an inactive job's jobspec: keep only what was derived from it
        self.has_jobspec = self.jobspec is not None
        self.jobspec = None
        fatal = self.exc_occurred and self.exc_severity == 0
        if self.waitstatus == 0 and not fatal:
            self.result = S.COMPLETED
        elif fatal and self.exc_type == "cancel":
            self.result = S.CANCELED
        elif fatal and self.exc_type == "timeout":
            self.result = S.TIMEOUT
        else:
            self.result = S.FAILED
        self.success = self.result == S.COMPLETED

    # ---------------------------------------------------------------- output
    @property
    def sort_priority(self) -> int:
        return self.priority if self.priority is not None else -1

    def annotations(self) -> dict | None:
        ann = getattr(self.job, "annotations", None)
        return ann if ann else None

    def get(self, attr: str) -> Any:
        """The value of one attribute, or None when it is not (yet) known."""
        m = self.states_mask
        if attr == "state":
            return self.state
        if attr == "userid":
            return self.userid
        if attr == "urgency":
            return self.urgency
        if attr == "priority":
            return self.priority if m & S.SCHED else None
        if attr == "t_submit":
            return self.t_submit
        if attr.startswith("t_"):
            v = getattr(self, attr)
            return v if v else None
        if attr in ("name", "cwd", "queue", "project", "bank", "ntasks", "ncores", "nnodes",
                    "waitstatus"):
            return getattr(self, attr)
        if attr == "duration":
            return self.duration if self.jobspec is not None or self.has_jobspec else None
        if attr in ("ranks", "nodelist", "expiration"):
            return getattr(self, attr) if m & S.RUN else None
        inactive = m & S.INACTIVE
        if attr == "success":
            return self.success if inactive else None
        if attr == "result":
            return self.result if inactive else None
        if attr == "exception_occurred":
            return self.exc_occurred if inactive else None
        if attr == "exception_severity":
            return self.exc_severity if inactive and self.exc_occurred else None
        if attr == "exception_type":
            return self.exc_type if inactive and self.exc_occurred else None
        if attr == "exception_note":
            return self.exc_note if inactive and self.exc_occurred else None
        if attr == "annotations":
            return self.annotations()
        if attr == "dependencies":
            return list(self.dependencies) if self.dependencies is not None else None
        raise KeyError(attr)

    def to_dict(self, attrs: tuple[str, ...] | list[str]) -> dict:
        """`{id, attr: value...}` with unknown values left out (attrs already validated)."""
        out: dict[str, Any] = {"id": self.id}
        get = self.get
        for a in attrs:
            v = get(a)
            if v is not None:
                out[a] = v
        return out
