"""The `sched` service of RFC 27 over the resource graph (`[sched] module = "graph"`).

The instance's R (from `resource.acquire`, with its JGF under `scheduling` when it has
one) becomes the graph. `sched.alloc` requests join a queue ordered by the queue
policy; one scheduling pass per turn of the event loop matches as many as it may
(jobqueue.py), writes their R to the KVS in one commit and answers them. Resource
updates from the resource service (drain, undrain, add, remove) change the graph at
run time; running jobs keep what they hold.

Besides RFC 27 (`sched.alloc/free/cancel/prioritize/expiration/resource-status` and
`feasibility.check`), the service answers:
- `sched.feasibility {jobspec}`: as `feasibility.check`;
- `sched.queue-policy {}` -> the policies in use; `{queue-policy?, queue-params?,
  match-policy?}` (owner) changes them while no job is pending (EBUSY otherwise);
- `sched.stats`: counters (passes, matches, pending, running, time spent).
"""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Any

import orjson
from flux.core.broker.service import NOREPLY, Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_kvs as kvs_dir
from flux.core.kvs import ops as kvsops
from flux.core.message import FLAG_STREAMING
from flux.core.resource.rv1 import Rank, ResourceSet
from flux.core.util import idset

from flux_sched_graph.config import SchedConfig, parse_params
from flux_sched_graph.jobqueue import JobQueue, PendingJob
from flux_sched_graph.policy import QueuePolicy, load_queue_policy
from flux_sched_graph.rfmt import duration_of, rank_jgf, rlist_of

SUCCESS, ANNOTATE, DENY, CANCEL = 0, 1, 2, 3
_UNKNOWN = object()  # feasibility not computed yet
LOG_CRIT, LOG_ERR, LOG_INFO = 2, 3, 6


class GraphScheduler(Service):
    name = "sched"

    def topics(self) -> list[str]:
        return ["sched", "feasibility"]

    def __init__(self, broker):
        super().__init__(broker)
        self.graph: Any = None
        self.policy: QueuePolicy | None = None  # the queue policy in use (each queue has a copy)
        self.queues: dict[str | None, JobQueue] = {}  # one per named queue (RFC 33), or None
        self.where: dict[int, JobQueue] = {}  # pending job -> its queue
        self.config = SchedConfig()
        self.error: str | None = None  # why the scheduler is not scheduling
        self.ready = False
        self.all = ResourceSet()  # the inventory, as R (for resource-status)
        self.down: set[int] = set()
        self.allocated: dict[int, dict] = {}  # jobid -> R (without `scheduling`)
        self._acquire = None
        self._kicked = False
        self._loaded = asyncio.Event()  # set once the graph is built (or failed to be)
        self._shapes: dict[bytes, list] = {}  # request shape -> [Request, why unsatisfiable]
        self.stats = {"passes": 0, "matches": 0, "started": 0, "denied": 0, "pass-seconds": 0.0}
        try:
            self.config = SchedConfig.from_instance(broker.conf, broker.attrs.get)
        except ValueError as exc:
            self.error = f"sched-graph: {exc}"

    def dispatch(self, msg):
        if msg.topic == "feasibility.check":
            return self._feasibility(msg)
        return super().dispatch(msg)

    # ============================================================== startup
    async def start(self) -> None:
        asyncio.ensure_future(self._startup())

    async def _startup(self) -> None:
        b = self.broker
        try:
            self._acquire = b.rpc("resource.acquire", flags=FLAG_STREAMING)
            first = await self._acquire.get()
            self._load_graph(first)
        except Exception as exc:  # noqa: BLE001 - reported; jobs stay pending
            self.graph = None
            self._fatal(f"sched-graph: cannot build the resource graph: {exc}")
            return
        finally:
            self._loaded.set()
        asyncio.ensure_future(self._follow_acquire())
        if self.error is None:
            self._configure(self.config)
        if self.error is not None:
            b.log(LOG_CRIT, f"{self.error}; scheduling is stopped until the policy is fixed "
                            f"(flux queue policy)")
            return
        await self._hello_ready()

    def _fatal(self, text: str) -> None:
        self.error = text
        self.broker.log(LOG_CRIT, text)

    def _load_graph(self, resp: dict) -> None:
        from flux.core.resource.graph import ResourceGraph

        R = resp["resources"]
        self.all = ResourceSet.from_dict(R)
        self.graph = ResourceGraph.from_rv1(rank_jgf(R, self.all))
        up = set(idset.decode(resp.get("up", ""))) if "up" in resp else set(self.all.ranks)
        self.down = set(self.all.ranks) - up
        if self.down:
            self.graph.drain(sorted(self.down))

    def _configure(self, cfg: SchedConfig) -> None:
        """Apply policies from `cfg`; on a bad name or parameter set self.error."""
        try:
            policy = load_queue_policy(cfg.queue_policy, cfg.queue_params)
            if cfg.match_policy is not None:
                self.graph.set_policy(cfg.match_policy)
        except (LookupError, ValueError) as exc:
            self.error = f"sched-graph: {exc}"
            return
        self.config = cfg
        self._set_policy(policy)
        self.error = None

    def _set_policy(self, policy: QueuePolicy) -> None:
        self.policy = policy
        for q in self.queues.values():
            q.set_policy(type(policy)(policy.params))

    def _queue(self, name: str | None) -> JobQueue:
        """The queue of jobs submitted to `name`: each named queue is scheduled on its
        own (a blocked job in one does not hold up another), on the same graph."""
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = JobQueue(self.graph, type(self.policy)(self.policy.params))
        return q

    @property
    def npending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    async def _hello_ready(self) -> None:
        b = self.broker
        async for job in b.rpc("job-manager.sched-hello", {"partial-ok": False}, flags=FLAG_STREAMING):
            R = job.get("R")
            if not isinstance(R, dict):
                b.log(LOG_ERR, f"sched-graph: job {job.get('id')} has no R; not restored")
                continue
            try:
                self.graph.claim(job["id"], R)
            except Exception as exc:  # noqa: BLE001
                b.log(LOG_ERR, f"sched-graph: cannot restore job {job['id']}'s allocation: {exc}")
                continue
            self.allocated[job["id"]] = _strip(R)
        await b.rpc("job-manager.sched-ready", {"mode": "unlimited"})
        self.ready = True
        b.log(LOG_INFO, f"sched-graph: ready: {self.all.nnodes} nodes, {self.all.ncores} cores, "
                        f"{self.all.ngpus} gpus; queue policy {self.policy.describe()}")
        self._kick()

    # ==================================================== resource updates
    async def _follow_acquire(self) -> None:
        while True:
            try:
                msg = await self._acquire.get_msg()
            except FluxError:
                return
            self._apply_update(msg.data() or {})
            self._pump()

    def _pump(self) -> None:
        """Apply resource updates already delivered, so a request sees them in order."""
        q = getattr(self._acquire, "queue", None)  # InternalRPC's delivered responses
        while q is not None and not q.empty():
            msg = q.get_nowait()
            if msg.errnum:
                return
            self._apply_update(msg.data() or {})

    def _apply_update(self, upd: dict) -> None:
        g = self.graph
        if g is None:
            return
        changed = False
        try:
            if "resources" in upd:  # our extension: resources added at run time
                new = ResourceSet.from_dict(upd["resources"])
                g.add(upd["resources"])
                self.all = self.all.union(new)
                fresh = set(new.ranks) - set(idset.decode(upd.get("up", "")))
                if fresh:
                    g.drain(sorted(fresh))
                    self.down |= fresh
                changed = True
            if "down" in upd:
                ranks = set(idset.decode(upd["down"])) & set(self.all.ranks)
                if ranks:
                    g.drain(sorted(ranks))
                    self.down |= ranks
                    changed = True
            if "up" in upd:
                ranks = set(idset.decode(upd["up"])) & set(self.all.ranks)
                if ranks:
                    g.undrain(sorted(ranks))
                    self.down -= ranks
                    changed = True
            if "shrink" in upd:
                ranks = set(idset.decode(upd["shrink"])) & set(self.all.ranks)
                if ranks:
                    g.remove(sorted(ranks))
                    self.all = self.all.select_ranks(set(self.all.ranks) - ranks)
                    self.down -= ranks
                    changed = True
        except Exception as exc:  # noqa: BLE001 - a bad update is logged, the rest goes on
            self.broker.log(LOG_ERR, f"sched-graph: resource update {sorted(upd)} failed: {exc}")
        if changed:
            for entry in self._shapes.values():
                entry[1] = _UNKNOWN
            for q in self.queues.values():
                q.changed()
            self._kick()

    # ============================================================== passes
    def _kick(self) -> None:
        if not self._kicked and self.ready:
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._pass)

    def _pass(self) -> None:
        self._kicked = False
        if not self.ready:
            return
        self._pump()
        t0 = time.perf_counter()
        now = time.time()
        more = False
        started: list = []
        for name in sorted(self.queues, key=lambda n: (n is not None, n or "")):
            q = self.queues[name]
            m0 = q.matches
            res = q.run(now)
            self.stats["passes"] += 1
            self.stats["matches"] += q.matches - m0
            more = more or res.more
            for job, _alloc in res.started:
                self.where.pop(job.id, None)
            started += res.started
            for job, alloc in res.reserved:
                t = float(alloc.starttime)
                if job.t_estimate != t:
                    job.t_estimate = t
                    self.respond(job.msg, {"id": job.id, "type": ANNOTATE,
                                           "annotations": {"sched": {"t_estimate": t}}})
            for job in res.unreserved:
                if job.t_estimate is not None:
                    job.t_estimate = None
                    self.respond(job.msg, {"id": job.id, "type": ANNOTATE,
                                           "annotations": {"sched": {"t_estimate": None}}})
        if started:
            self._grant(started)
        self.stats["pass-seconds"] += time.perf_counter() - t0
        if more:
            self._kick()

    def _grant(self, started: list) -> None:
        nosched = self.config.match_format == "rv1_nosched"
        ops = []
        answers = []
        for job, alloc in started:
            R = alloc.to_rv1()
            bare = _strip(R)
            self.allocated[job.id] = bare
            if nosched:
                R = bare
            ops.append(kvsops.put_json(kvs_dir(job.id) + ".R", R))
            ann: dict = {"resource_summary": rlist_of(bare)}
            if job.t_estimate is not None:
                ann["t_estimate"] = None
            answers.append((job.msg, {"id": job.id, "type": SUCCESS, "R": R,
                                      "annotations": {"sched": ann}}))
        self.stats["started"] += len(started)
        fut = self.broker.kvs.commit_nowait("primary", ops)

        def committed(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                exc = None if f.cancelled() else f.exception()
                self.broker.log(LOG_ERR, f"sched-graph: storing R failed: {exc}")
                for msg, _ans in answers:
                    self.respond_error(msg, errno.EIO, f"sched-graph: storing R failed: {exc}")
                return
            for msg, ans in answers:
                self.respond(msg, ans)

        fut.add_done_callback(committed)

    # ============================================================ protocol
    def _shape(self, jobspec: dict) -> list:
        """[Request, why-unsatisfiable or _UNKNOWN, shape] for the jobspec's request, cached per
        shape (resources, constraints, duration): ensembles submit the same shape over and
        over, and the graph keeps per-request caches of its own on the Request."""
        try:
            system = (jobspec.get("attributes") or {}).get("system") or {}
            shape = orjson.dumps([jobspec.get("resources"), system.get("constraints")],
                                 option=orjson.OPT_SORT_KEYS)
            key = shape + orjson.dumps(system.get("duration"))
        except (TypeError, AttributeError):
            shape = key = None
        entry = self._shapes.get(key) if key is not None else None
        if entry is None:
            from flux.core.resource.graph import Request

            entry = [Request.from_jobspec(jobspec), _UNKNOWN, shape]  # ValueError: bad jobspec
            if key is not None:
                if len(self._shapes) >= 4096:
                    self._shapes.clear()
                self._shapes[key] = entry
        return entry

    def _unsatisfiable(self, entry: list) -> str | None:
        """Why the request can never be met here (None: it can)."""
        if entry[1] is not _UNKNOWN:
            return entry[1]
        # drained nodes count: they are part of the instance and come back
        ok, reason = self.graph.satisfiable(entry[0])
        entry[1] = None if ok else (reason or "the request can never be satisfied")
        return entry[1]

    @method("alloc", owner_only=True)
    def alloc(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        jobspec = require(p, "jobspec", dict, msg.topic)
        if not self.ready:
            raise FluxError(errno.EAGAIN, "sched-graph is not ready")
        try:
            entry = self._shape(jobspec)
            duration = duration_of(jobspec)
        except ValueError as exc:
            self.stats["denied"] += 1
            self.respond(msg, {"id": jobid, "type": DENY, "note": str(exc)})
            return NOREPLY
        req = entry[0]
        why = self._unsatisfiable(entry)
        if why:
            self.stats["denied"] += 1
            self.respond(msg, {"id": jobid, "type": DENY, "note": f"unsatisfiable request: {why}"})
            return NOREPLY
        job = PendingJob(jobid, int(p.get("priority", 16)), float(p.get("t_submit", 0.0)), req,
                         duration, int(p.get("userid", 0)), msg, shape=entry[2])
        if jobid in self.where:
            raise FluxError(errno.EEXIST, f"job {jobid} is already pending")
        system = (jobspec.get("attributes") or {}).get("system") or {}
        name = system.get("queue") if isinstance(system.get("queue"), str) else None
        q = self._queue(name)
        q.add(job)
        self.where[jobid] = q
        self._kick()
        return NOREPLY

    @method("free", owner_only=True)
    def free_(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        if self.allocated.pop(jobid, None) is None:
            self.broker.log(LOG_ERR, f"sched-graph: free of unknown job {jobid}")
            return NOREPLY
        self._pump()
        self.graph.free(jobid)
        for q in self.queues.values():
            q.changed()
        self._kick()
        return NOREPLY

    @method("cancel", owner_only=True)
    def cancel(self, msg):
        jobid = require(payload_of(msg), "id", int, msg.topic)
        q = self.where.pop(jobid, None)
        job = q.remove(jobid) if q is not None else None
        if job is not None:
            self.respond(job.msg, {"id": jobid, "type": CANCEL})
            self._kick()
        return NOREPLY

    @method("prioritize", owner_only=True)
    def prioritize(self, msg):
        jobs = require(payload_of(msg), "jobs", list, msg.topic)
        for item in jobs:
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, int) for x in item)):
                raise FluxError(errno.EPROTO, "sched.prioritize: jobs must be [[id, priority], ...]")
        changed = False
        for jobid, prio in jobs:
            q = self.where.get(jobid)
            if q is not None and q.reprioritize(jobid, prio):
                changed = True
        if changed:
            self._kick()
        return NOREPLY

    @method("expiration", owner_only=True)
    def expiration(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        R = self.allocated.get(jobid)
        if R is None:
            raise FluxError(errno.ENOENT, f"job {jobid} has no allocation")
        exp = p.get("expiration")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp < 0:
            raise FluxError(errno.EPROTO, "sched.expiration: expiration must be a number >= 0")
        R["execution"]["expiration"] = float(exp)
        return {}

    # ========================================================= feasibility
    def _feasibility(self, msg):
        try:
            p = payload_of(msg)
            jobspec = require(p, "jobspec", dict, msg.topic)
            if self.graph is None:  # still starting: answer once the graph is built
                asyncio.ensure_future(self._feasibility_later(msg))
                return
            try:
                entry = self._shape(jobspec)
            except ValueError as exc:
                raise FluxError(errno.EINVAL, str(exc)) from None
            why = self._unsatisfiable(entry)
            if why:
                raise FluxError(errno.EOVERFLOW, f"unsatisfiable request: {why}")
        except FluxError as exc:
            self.respond_error(msg, exc.errno, exc.strerror)
            return
        self.respond(msg, {})

    async def _feasibility_later(self, msg) -> None:
        await self._loaded.wait()
        if self.graph is None:  # no graph could be built: nothing to judge against
            self.respond(msg, {})
        else:
            self._feasibility(msg)

    @method("feasibility")
    def feasibility(self, msg):
        self._feasibility(msg)
        return NOREPLY

    # ===================================================== status, policy
    @method("resource-status")
    def resource_status(self, msg):
        self._pump()
        per: dict[int, tuple[set, set]] = {}
        for R in self.allocated.values():
            for entry in R["execution"]["R_lite"]:
                ch = entry.get("children", {})
                cores = idset.decode(ch.get("core", ""))
                gpus = idset.decode(ch.get("gpu", ""))
                for r in idset.decode(entry["rank"]):
                    c, g = per.setdefault(r, (set(), set()))
                    c.update(cores)
                    g.update(gpus)
        hosts = {r: rk.host for r, rk in self.all.ranks.items()}
        alloc = ResourceSet({r: Rank(r, hosts.get(r, ""), c, g) for r, (c, g) in per.items()})
        down = self.all.select_ranks(self.down)
        return {"all": self.all.to_dict(), "down": down.to_dict(), "allocated": alloc.to_dict()}

    def _policy_info(self) -> dict:
        out: dict = {"scheduler": "graph", "queue-policy": self.config.queue_policy,
                     "queue-params": dict(self.config.queue_params),
                     "match-policy": self.config.match_policy or "default",
                     "match-format": self.config.match_format}
        if self.policy is not None:
            out["queue-policy"] = self.policy.name
            out["queue-params"] = dict(self.policy.params)
            out["description"] = self.policy.describe()
        pol = getattr(self.graph, "policy", None)
        name = getattr(pol, "name", pol)
        if isinstance(name, str):
            out["match-policy"] = name
        if self.error:
            out["error"] = self.error
        return out

    @method("queue-policy")
    async def queue_policy(self, msg):
        p = payload_of(msg)
        if not p:
            return self._policy_info()
        from flux.core.message import ROLE_OWNER

        if not msg.rolemask & ROLE_OWNER:
            raise FluxError(errno.EPERM, "changing the queue policy is restricted to the instance owner")
        unknown = sorted(set(p) - {"queue-policy", "queue-params", "match-policy"})
        if unknown:
            raise FluxError(errno.EPROTO, f"sched.queue-policy: unknown field '{unknown[0]}'")
        if self.graph is None:
            raise FluxError(errno.EAGAIN, "sched-graph has no resources yet")
        self._pump()
        if self.npending:
            raise FluxError(errno.EBUSY, f"the queue is not idle: {self.npending} jobs are pending "
                                         f"(change the policy when no job waits for resources)")
        cfg = SchedConfig(queue_policy=self.config.queue_policy, match_policy=self.config.match_policy,
                          match_format=self.config.match_format,
                          queue_params=dict(self.policy.params) if self.policy else
                          dict(self.config.queue_params))
        try:
            if "queue-policy" in p:
                if not isinstance(p["queue-policy"], str):
                    raise ValueError("queue-policy must be a string")
                if p["queue-policy"] != cfg.queue_policy:
                    cfg.queue_params = {}  # the old policy's parameters may not apply
                cfg.queue_policy = p["queue-policy"]
            if "queue-params" in p:
                cfg.queue_params.update(parse_params(p["queue-params"], "queue-params"))
            if "match-policy" in p:
                if not isinstance(p["match-policy"], str):
                    raise ValueError("match-policy must be a string")
                cfg.match_policy = p["match-policy"]
            policy = load_queue_policy(cfg.queue_policy, cfg.queue_params)
            if "match-policy" in p:
                self.graph.set_policy(cfg.match_policy)
        except LookupError as exc:
            raise FluxError(errno.ENOENT, str(exc)) from None
        except ValueError as exc:
            raise FluxError(errno.EINVAL, str(exc)) from None
        cfg.queue_params = dict(policy.params)
        self.config = cfg
        self._set_policy(policy)
        was_error = self.error
        self.error = None
        self.broker.log(LOG_INFO, f"sched-graph: queue policy {policy.describe()}, "
                                  f"match policy {cfg.match_policy or 'default'}")
        if not self.ready and was_error is not None:
            await self._hello_ready()
        return self._policy_info()

    @method("stats")
    def stats_get(self, msg):
        out = dict(self.stats)
        out["pending"] = self.npending
        out["queues"] = {str(k) if k is not None else "": len(q) for k, q in self.queues.items()}
        out["running"] = len(self.allocated)
        if self.graph is not None:
            try:
                out["graph"] = self.graph.stats()
            except Exception as exc:  # noqa: BLE001
                out["graph"] = {"error": str(exc)}
        return out


def _strip(R: dict) -> dict:
    """R without the `scheduling` key (what the scheduler keeps per job)."""
    if "scheduling" not in R:
        return R
    return {k: v for k, v in R.items() if k != "scheduling"}
