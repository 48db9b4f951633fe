"""The parent side of an ensemble: child instances, and the jobs sent to them.

A job reaches a child in one of two ways:
- it was submitted here: when it enters SCHED, the job manager asks its jobtap
  plugins for a delegate (`jobtap_delegate`) and we take it. It gets no allocation
  here; its events mirror those of the job in the child (alloc, start, finish,
  release, free, clean, exceptions, memos), so `flux jobs`, `flux job wait`,
  `flux job attach` and FluxExecutor work here as for any job.
- it came from our own parent (we are a middle level): it passes through, with no
  job here; its events go back up as they come.

Jobs go down in batches: everything taken in one event-loop turn is placed (round
robin or least loaded) and sent as one message per child, a response on the
child's `ensemble.join` stream. Each link has its own job keys, chosen by the
sender, so a job is one dict lookup per hop.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import time

import orjson
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_f58, encode_kvs

from flux_ensemble import children, policy, shape
from flux_ensemble.config import EnsembleConfig


def pack(jobs: list[dict]) -> dict:
    """A batch going down: each distinct jobspec and environment once (an ensemble's
    jobs mostly share both: a few KB each, where the rest of a job is a few bytes)."""
    specs: list = []
    envs: list = []
    sidx: dict[int, int] = {}
    eidx: dict[int, int] = {}
    for p in jobs:
        _by_index(p, "jobspec", "spec", specs, sidx)
        _by_index(p, "env", "env", envs, eidx)
    return {"jobs": jobs, "specs": specs, "envs": envs}


def _by_index(p: dict, key: str, ikey: str, table: list, index: dict[int, int]) -> None:
    """Replace p[key] by p[ikey] = its position in table (the same object once)."""
    value = p.pop(key, None)
    if value is None:
        return
    i = index.get(id(value))
    if i is None:
        i = index[id(value)] = len(table)
        table.append(value)
    p[ikey] = i


def unpack(batch: dict) -> list[dict]:
    """The jobs of a batch from pack(), with their (shared) jobspec and environment."""
    jobs = batch.get("jobs") or []
    specs = batch.get("specs") or []
    envs = batch.get("envs") or []
    for p in jobs:
        i = p.pop("spec", None)
        if isinstance(i, int) and 0 <= i < len(specs):
            p["jobspec"] = specs[i]
        i = p.get("env")
        if isinstance(i, int) and not isinstance(i, bool):
            p["env"] = envs[i] if 0 <= i < len(envs) else None
    return jobs


class Child:
    """One child instance: a job of this instance, and its channel once it joined."""

    __slots__ = ("index", "spec", "jobid", "msg", "sender", "uri", "tree", "ranks", "rerank",
                 "outstanding", "sent", "done", "jobs", "cancels", "kills", "state", "error")

    def __init__(self, index: int, spec: shape.ChildSpec):
        self.index = index
        self.spec = spec
        self.jobid: int | None = None
        self.msg = None  # its ensemble.join request: jobs go down as responses
        self.sender: str | None = None
        self.uri: str | None = None
        self.tree: dict | None = None
        self.ranks: list[int] = []  # our broker ranks it runs on (from its job's R)
        self.rerank: children.Reranker | None = None  # its R in our ranks
        self.outstanding = 0  # jobs sent, not yet clean
        self.sent = 0
        self.done = 0
        self.jobs: list[dict] = []
        self.cancels: list[list] = []
        self.kills: list[list] = []
        self.state = "starting"  # starting -> joined -> lost
        self.error: str | None = None

    def describe(self) -> dict:
        return {"index": self.index, "id": self.jobid, "state": self.state,
                "resources": self.spec.describe(), "uri": self.uri, "sent": self.sent,
                "done": self.done, "outstanding": self.outstanding, "error": self.error,
                "tree": self.tree}


class Route:
    """A job on its way down: either a job of ours (`job`) or one passing through
    (`upkey`, its key on the link from our parent)."""

    __slots__ = ("key", "child", "job", "upkey", "payload", "cancel_sent")

    def __init__(self, key: int, job=None, upkey: int | None = None, payload: dict | None = None):
        self.key = key
        self.child: Child | None = None
        self.job = job
        self.upkey = upkey
        self.payload = payload
        self.cancel_sent = False


class Downstream:
    def __init__(self, svc, cfg: EnsembleConfig):
        self.svc = svc
        self.broker = svc.broker
        self.jm = svc.broker.job_manager
        self.cfg = cfg
        self.policy = policy.make(cfg.policy)
        self.children: list[Child] = []
        self.by_jobid: dict[int, Child] = {}
        self.routes: dict[int, Route] = {}
        self.upkeys: dict[int, Route] = {}  # pass-through jobs by their upstream key
        self.queue: dict[int, Route] = {}  # not sent yet
        self.keys = itertools.count(1)
        self.mirroring = False
        self.flush_scheduled = False
        self.error: str | None = None
        self.stats = {"taken": 0, "forwarded": 0, "completed": 0, "failed": 0,
                      "t_first": None, "t_last": None}
        self.local_active = 0  # jobs of ours (not passing through) not yet inactive
        self.jm.listeners.append(self._child_job_event)

    # ============================================================ children
    async def start_children(self) -> None:
        """Submit one job per child instance, as this instance's resources split."""
        R = self.broker.resource.R
        nodes = list(R.ranks.values()) if R is not None else []
        try:
            if not nodes:
                raise shape.ShapeError("this instance has no resources")
            ncores = min(len(n.cores) for n in nodes)
            specs = shape.split(self.cfg.levels[0], len(nodes), ncores)
            shape.count_instances(self.cfg.levels[1:], specs[0].nnodes, specs[0].ncores)
        except shape.ShapeError as exc:
            self.fail(f"ensemble shape {shape.render(self.cfg.levels)!r}: {exc}")
            return
        below = self.cfg.levels[1:]
        self.children = [Child(i, s) for i, s in enumerate(specs)]
        from flux.core.security.sign import wrap_none

        jobs = [{"J": wrap_none(orjson.dumps(children.child_jobspec(
                    c.spec, c.index, below, self.cfg, self.broker.attrs.get("local-uri"))),
                                self.broker.owner), "urgency": 16, "flags": 0}
                for c in self.children]
        try:
            resp = await self.broker.rpc("job-ingest.submit", {"jobs": jobs}).get()
        except FluxError as exc:
            self.fail(f"cannot submit the child instances: {exc.strerror}")
            return
        for c, r in zip(self.children, resp["jobs"], strict=True):
            if "id" in r:
                c.jobid = r["id"]
                self.by_jobid[c.jobid] = c
            else:
                c.state = "lost"
                c.error = r.get("errstr", "submission failed")
        if not self.by_jobid:
            self.fail(f"no child instance could be submitted: {self.children[0].error}")
            return
        self._check_fit(shape.leaf_spec(self.cfg.levels, len(nodes), ncores))
        self.broker.log(6, f"ensemble: started {len(self.by_jobid)} child instance(s) of "
                           f"{specs[0].describe()} each, shape {shape.render(self.cfg.levels)}")

    def _check_fit(self, leaf: shape.ChildSpec) -> None:
        """Ingest measures jobs against a leaf, not against this instance's scheduler
        (whose resources are all the children's): see fits.py."""
        from flux_ensemble.fits import FitsLeaf

        ingest = next((s for s in self.broker.service_objects
                       if getattr(s, "name", None) == "job-ingest"), None)
        if ingest is None or not hasattr(ingest, "register"):
            return
        if ingest.unregister("feasibility"):
            ingest.register(FitsLeaf(leaf, shape.render(self.cfg.levels)), "ensemble-fits")

    def fail(self, why: str) -> None:
        """Nothing can run below us: say so, and fail what waits."""
        self.error = why
        # children end when the instance does: no error then
        self.broker.log(6 if getattr(self.broker, "shutdown_started", False) else 3,
                        f"ensemble: {why}")
        for route in list(self.queue.values()):
            self._synthesize(route, why)
        self.queue.clear()
        self.svc.check_ready()

    def _child_job_event(self, job, e: dict) -> None:
        """Job manager listener: our child instances' own jobs."""
        if job is None:
            return
        child = self.by_jobid.get(job.id)
        if child is None:
            return
        name = e["name"]
        if name == "alloc":
            child.ranks = children.ranks_of(job.R)
            child.rerank = children.Reranker(child.ranks)
        elif name in ("finish", "clean") or (name == "exception" and
                                             (e.get("context") or {}).get("severity", 0) == 0):
            note = (e.get("context") or {}).get("note") if name == "exception" else None
            self.lost(child, f"ensemble child instance {encode_f58(job.id)} ended"
                             + (f": {note}" if note else ""))

    def join(self, msg, p: dict) -> None:
        """A child is up (with its own subtree): jobs may go to it."""
        jobid = p.get("id")
        child = self.by_jobid.get(jobid) if isinstance(jobid, int) else None
        if child is None:
            raise FluxError(errno.ENOENT, f"job {jobid} is not a child instance of this ensemble")
        if child.state != "starting":
            raise FluxError(errno.EEXIST, f"child instance {encode_f58(jobid)} already joined")
        child.msg = msg
        child.sender = msg.sender
        child.uri = p.get("uri")
        child.tree = p.get("tree")
        job = self.jm.jobs.get(jobid)
        if job is not None and job.R is not None:
            child.ranks = children.ranks_of(job.R)
            child.rerank = children.Reranker(child.ranks)
        child.state = "joined"
        self.broker.log(6, f"ensemble: child {child.index} ({encode_f58(jobid)}) joined")
        self._schedule_flush()
        self.svc.check_ready()

    def disconnect(self, sender: str) -> None:
        for c in self.children:
            if c.sender == sender and c.state == "joined":
                self.lost(c, f"ensemble child instance {encode_f58(c.jobid)} went away")

    def lost(self, child: Child, note: str) -> None:
        """A child instance ended: its jobs fail with an `ensemble` exception."""
        if child.state == "lost":
            return
        was_joined = child.state == "joined"
        child.state = "lost"
        child.error = note
        if child.msg is not None and was_joined:
            try:
                self.svc.respond_error(child.msg, errno.ENODATA, note)  # the stream ends
            except Exception:  # noqa: BLE001 - the child may be gone already
                pass
        child.msg = None
        for route in [r for r in self.routes.values() if r.child is child]:
            self._synthesize(route, note)
        if not any(c.state != "lost" for c in self.children):
            self.fail("every ensemble child instance has ended")
        self.svc.check_ready()

    def _synthesize(self, route: Route, note: str) -> None:
        """The job can no longer run below: end it here (or tell the origin)."""
        self.routes.pop(route.key, None)
        self.queue.pop(route.key, None)
        if route.child is not None:
            route.child.outstanding -= 1
        if route.job is not None:
            job = route.job
            if job.active:
                if job.exception is None:
                    self._post(job, "exception", {"type": "ensemble", "severity": 0, "note": note})
                if job.active:
                    self._post(job, "clean", None)
        else:
            self.upkeys.pop(route.upkey, None)
            up = self.svc.upstream
            if up is not None:
                up.send(route.upkey, "exception", {"type": "ensemble", "severity": 0, "note": note})
                up.send(route.upkey, "clean", None)

    @property
    def ready(self) -> bool:
        return bool(self.children) and all(c.state != "starting" for c in self.children) \
            and any(c.state == "joined" for c in self.children)

    # ==================================================== the job manager's delegate
    def take(self, job) -> Downstream | None:
        """jobtap_delegate: a job of ours entered SCHED."""
        try:
            ens = job.jobspec["attributes"]["system"].get("ensemble")
        except (KeyError, TypeError, AttributeError):
            ens = None
        if ens is not None and "child" in ens:
            return None  # one of our child instances: scheduled here
        key = next(self.keys)
        route = Route(key, job=job)
        job.aux["ensemble.key"] = key
        self.routes[key] = route
        self.local_active += 1
        self._enqueue(route)
        return self

    def cleanup(self, job) -> None:
        """The job is in CLEANUP. If a mirrored event put it there, the child's `clean`
        will follow; else it failed here (cancel): stop it below, or end it now."""
        if self.mirroring:
            return
        route = self.routes.get(job.aux.get("ensemble.key"))
        if route is None:
            if job.active:
                self._post(job, "clean", None)
            return
        if route.child is None:  # never sent
            self.routes.pop(route.key, None)
            self.queue.pop(route.key, None)
            self._post(job, "clean", None)
        elif route.child.state == "lost":
            self._synthesize(route, route.child.error or "ensemble child instance ended")
        elif not route.cancel_sent:
            route.cancel_sent = True
            exc = job.exception or {"type": "cancel", "severity": 0}
            route.child.cancels.append([route.key, exc])
            self._schedule_flush()

    def kill(self, job, signum: int) -> None:
        route = self.routes.get(job.aux.get("ensemble.key"))
        if route is not None and route.child is not None and route.child.state == "joined":
            route.child.kills.append([route.key, signum])
            self._schedule_flush()

    def _post(self, job, name: str, ctx: dict | None) -> None:
        self.mirroring = True
        try:
            self.jm.post(job, name, ctx)
        finally:
            self.mirroring = False
        if name == "clean":
            self.local_active -= 1
            if not job.success:
                self.stats["failed"] += 1
            self.svc.job_done()

    # ========================================================== pass-through
    def forward(self, items: list[dict]) -> None:
        """Jobs from our parent (we are a middle level): straight on down."""
        for it in items:
            upkey = it["key"]
            key = next(self.keys)
            it["key"] = key
            route = Route(key, upkey=upkey, payload=it)
            self.routes[key] = route
            self.upkeys[upkey] = route
            self._enqueue(route)

    def cancel_forwarded(self, upkey: int, ctx: dict) -> None:
        route = self.upkeys.get(upkey)
        if route is None:
            return
        if route.child is None:  # not sent yet: over at once
            self.routes.pop(route.key, None)
            self.queue.pop(route.key, None)
            self.upkeys.pop(upkey, None)
            self.svc.upstream.send(upkey, "clean", None)
        elif route.child.state == "joined" and not route.cancel_sent:
            route.cancel_sent = True
            route.child.cancels.append([route.key, ctx])
            self._schedule_flush()

    def kill_forwarded(self, upkey: int, signum: int) -> None:
        route = self.upkeys.get(upkey)
        if route is not None and route.child is not None and route.child.state == "joined":
            route.child.kills.append([route.key, signum])
            self._schedule_flush()

    # ============================================================== sending
    def _enqueue(self, route: Route) -> None:
        st = self.stats
        st["taken"] += 1
        if st["t_first"] is None:
            st["t_first"] = time.time()
        self.queue[route.key] = route
        if self.error:
            asyncio.get_running_loop().call_soon(self.fail, self.error)
            return
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _payload(self, route: Route) -> dict | None:
        if route.payload is not None:
            p, route.payload = route.payload, None
            return p
        job = route.job
        p = {"key": route.key, "jobspec": job.jobspec, "env": job.aux.pop("ensemble.env", None),
             "userid": job.userid, "urgency": job.urgency, "priority": job.priority,
             "t_submit": job.t_submit, "origin": encode_f58(job.id)}
        if job.userid != self.broker.owner:
            # a guest's signed request must reach the instance that runs the job (the
            # IMP checks it there); the owner's J (mechanism none) is remade there
            try:
                p["J"] = self.broker.kvs.lookup_value("primary", encode_kvs(job.id) + ".J").decode()
            except FluxError as exc:
                self._synthesize(route, f"ensemble: cannot read the job's J to forward it: "
                                        f"{exc.strerror}")
                return None
        return p

    def _flush(self) -> None:
        self.flush_scheduled = False
        ready = [c for c in self.children if c.state == "joined"]
        if ready and self.queue:
            pick = self.policy.pick
            queue, self.queue = self.queue, {}
            n = 0
            for route in queue.values():
                if route.key not in self.routes:
                    continue
                p = self._payload(route)
                if p is None:
                    continue
                child = pick(ready)
                route.child = child
                child.outstanding += 1
                child.sent += 1
                child.jobs.append(p)
                n += 1
            self.stats["forwarded"] += n
        bmax = self.cfg.batch_max
        for c in ready:
            if c.jobs:
                jobs, c.jobs = c.jobs, []
                for i in range(0, len(jobs), bmax):
                    self.svc.respond(c.msg, pack(jobs[i:i + bmax]))
            if c.cancels or c.kills:  # after the jobs they may name
                self.svc.respond(c.msg, {"cancel": c.cancels, "kill": c.kills})
                c.cancels, c.kills = [], []

    # ============================================================ receiving
    def events(self, p: dict) -> None:
        """`ensemble.events` from a child: [[key, name, context, extra?], ...]."""
        jobid = p.get("id")
        child = self.by_jobid.get(jobid) if isinstance(jobid, int) else None
        if child is None:
            raise FluxError(errno.ENOENT, f"job {jobid} is not a child instance of this ensemble")
        items = p.get("events")
        if not isinstance(items, list):
            raise FluxError(errno.EPROTO, "ensemble.events: events must be an array")
        routes = self.routes
        up = self.svc.upstream
        st = self.stats
        for item in items:
            route = routes.get(item[0])
            if route is None or route.child is not child:
                continue
            name, ctx = item[1], item[2]
            extra = item[3] if len(item) > 3 else None
            if extra and "R" in extra and child.rerank is not None:
                extra["R"] = child.rerank(extra["R"])
            if name == "clean":
                del routes[route.key]
                child.outstanding -= 1
                child.done += 1
                st["completed"] += 1
                st["t_last"] = time.time()
                if route.upkey is not None:
                    self.upkeys.pop(route.upkey, None)
            if route.job is not None:
                self._mirror(route.job, name, ctx, extra)
            elif up is not None:
                up.send(route.upkey, name, ctx, extra)

    def _mirror(self, job, name: str, ctx: dict | None, extra: dict | None) -> None:
        if not job.active:
            return
        if name == "exception" and (ctx or {}).get("severity", 0) == 0 and job.exception is not None:
            return  # it failed here first (e.g. canceled here): the child's echo of it
        if extra:
            if name == "alloc" and extra.get("R") is not None:
                job.R = extra["R"]
            guest = extra.get("guest")
            if guest:
                self._store_guest(job, guest)
        self._post(job, name, ctx)

    def _store_guest(self, job, guest: dict) -> None:
        """The child's exec eventlog, output and input of the job, as
        `job.<id>.guest.*` here: `flux job attach` and `flux job eventlog -p output`
        read them like those of a job that ran here."""
        d = encode_kvs(job.id) + ".guest."
        ops = [{"key": d + k, "flags": 0, "raw": v.encode()} for k, v in guest.items()
               if k in ("exec.eventlog", "output", "input") and isinstance(v, str)]
        if ops:
            try:
                self.broker.kvs.commit_nowait("primary", ops)
            except FluxError as exc:
                self.broker.log(3, f"ensemble: could not store the output of job "
                                   f"{encode_f58(job.id)}: {exc.strerror}")

    def describe(self) -> dict:
        return {"children": [c.describe() for c in self.children], "error": self.error,
                "queued": len(self.queue), "outstanding": len(self.routes)}
