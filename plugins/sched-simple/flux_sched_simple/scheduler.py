"""The `sched` service of RFC 27, first come first served.

Jobs are placed in priority order (then submit order); a job that does not fit
now blocks the ones behind it (no backfill), one that can never fit is denied at
once with the reason. Cores and GPUs are allocated per slot, so jobs share nodes
unless they ask for whole nodes (`-N` without `-n`, or `-x`).
"""

from __future__ import annotations

import base64
import bisect
import errno
import time

import orjson
from flux.core.broker.service import NOREPLY, Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_kvs as kvs_dir
from flux.core.message import FLAG_STREAMING
from flux.core.resource.rv1 import Rank, ResourceSet
from flux.core.util import idset

from flux_sched_simple.request import Request, Unsupported

SUCCESS, ANNOTATE, DENY, CANCEL = 0, 1, 2, 3


class Pending:
    __slots__ = ("id", "priority", "t_submit", "req", "msg", "key")

    def __init__(self, jobid, priority, t_submit, req, msg):
        self.id, self.priority, self.t_submit, self.req, self.msg = jobid, priority, t_submit, req, msg
        self.key = (-priority, t_submit, jobid)

    def __lt__(self, other):
        return self.key < other.key


class SimpleScheduler(Service):
    name = "sched"

    def topics(self):
        return ["sched", "feasibility"]

    def __init__(self, broker):
        super().__init__(broker)
        self.all: ResourceSet | None = None
        self.free: dict[int, tuple[set[int], set[int]]] = {}
        self.up: set[int] = set()
        self.allocated: dict[int, ResourceSet] = {}
        self.queue: list[Pending] = []
        self.by_id: dict[int, Pending] = {}
        conf = broker.conf.get("sched-simple", {})
        depth = conf.get("queue-depth", broker.attrs.get("sched-simple.queue-depth", "unlimited"))
        self.queue_depth = 0 if str(depth) == "unlimited" else int(depth)
        self._acquire = None

    def dispatch(self, msg):
        if msg.topic == "feasibility.check":
            return self._feasibility(msg)
        return super().dispatch(msg)

    # --------------------------------------------------------------- startup
    async def start(self) -> None:
        import asyncio

        asyncio.ensure_future(self._startup())

    async def _startup(self) -> None:
        b = self.broker
        self._acquire = b.rpc("resource.acquire", flags=FLAG_STREAMING)
        first = await self._acquire.get()
        self._set_resources(first)
        import asyncio

        asyncio.ensure_future(self._follow_acquire())
        async for job in b.rpc("job-manager.sched-hello", {"partial-ok": False}, flags=FLAG_STREAMING):
            R = ResourceSet.from_dict(job["R"])
            self._take(R)
            self.allocated[job["id"]] = R
        mode = {"mode": "unlimited"} if not self.queue_depth else {"mode": "limited",
                                                                    "limit": self.queue_depth}
        await b.rpc("job-manager.sched-ready", mode)
        b.log(6, f"sched-simple: ready with {self.all.ncores} cores, {self.all.ngpus} gpus "
                 f"on {self.all.nnodes} nodes")

    async def _follow_acquire(self) -> None:
        while True:
            try:
                upd = await self._acquire.get()
            except FluxError:
                return
            if "resources" in upd:  # grown at run time (flux resource add)
                new = ResourceSet.from_dict(upd["resources"])
                self.all = self.all.union(new)
                for r, rk in new.ranks.items():
                    self.free[r] = (set(rk.cores), set(rk.gpus))
            if "shrink" in upd:  # removed at run time (flux resource remove): never in use
                gone = set(idset.decode(upd["shrink"]))
                self.all = self.all.select_ranks(set(self.all.ranks) - gone)
                self.up -= gone
                for r in gone:
                    self.free.pop(r, None)
            if "down" in upd:
                self.up -= set(idset.decode(upd["down"]))
            if "up" in upd:
                self.up |= set(idset.decode(upd["up"])) & set(self.all.ranks)
                self._schedule()

    def _set_resources(self, resp: dict) -> None:
        self.all = ResourceSet.from_dict(resp["resources"])
        self.free = {r: (set(rk.cores), set(rk.gpus)) for r, rk in self.all.ranks.items()}
        self.up = set(idset.decode(resp.get("up", ""))) & set(self.all.ranks)

    def _take(self, R: ResourceSet) -> None:
        for r, rk in R.ranks.items():
            if r in self.free:
                self.free[r][0].difference_update(rk.cores)
                self.free[r][1].difference_update(rk.gpus)

    # ------------------------------------------------------------- placement
    def _fits_total(self, req: Request) -> str | None:
        """Why the request can never be satisfied here, or None."""
        total = self.all
        if req.nnodes:
            if req.nnodes > total.nnodes:
                return f"requested {req.nnodes} nodes but the instance has {total.nnodes}"
            ok = [rk for rk in total.ranks.values()
                  if len(rk.cores) >= req.slots_per_node * req.cores
                  and len(rk.gpus) >= req.slots_per_node * req.gpus]
            if len(ok) < req.nnodes:
                return (f"requested {req.nnodes} nodes with {req.slots_per_node * req.cores} cores"
                        f"{f' and {req.slots_per_node * req.gpus} gpus' if req.gpus else ''} each, "
                        f"but only {len(ok)} nodes have that")
            return None
        per_rank = sum(min(len(rk.cores) // req.cores,
                           len(rk.gpus) // req.gpus if req.gpus else 1 << 30)
                       for rk in total.ranks.values())
        if per_rank < req.nslots:
            what = f"{req.nslots} slots of {req.cores} cores"
            if req.gpus:
                what += f" and {req.gpus} gpus"
            return (f"requested {what} but the instance has {total.ncores} cores"
                    f"{f' and {total.ngpus} gpus' if total.ngpus or req.gpus else ''} "
                    f"on {total.nnodes} nodes")
        return None

    def _place(self, req: Request) -> dict[int, tuple[list[int], list[int]]] | None:
        picks: dict[int, tuple[list[int], list[int]]] = {}
        ranks = sorted(self.up)
        if req.nnodes:
            need_c = req.slots_per_node * req.cores
            need_g = req.slots_per_node * req.gpus
            for r in ranks:
                fc, fg = self.free[r]
                rk = self.all.ranks[r]
                if req.exclusive:
                    if len(fc) == len(rk.cores) and len(fg) == len(rk.gpus) and len(fc) >= need_c \
                            and len(fg) >= need_g:
                        picks[r] = (sorted(fc), sorted(fg))
                elif len(fc) >= need_c and len(fg) >= need_g:
                    picks[r] = (sorted(fc)[:need_c], sorted(fg)[:need_g])
                if len(picks) == req.nnodes:
                    return picks
            return None
        remaining = req.nslots
        for r in ranks:
            fc, fg = self.free[r]
            n = len(fc) // req.cores
            if req.gpus:
                n = min(n, len(fg) // req.gpus)
            if n <= 0:
                continue
            n = min(n, remaining)
            picks[r] = (sorted(fc)[: n * req.cores], sorted(fg)[: n * req.gpus])
            remaining -= n
            if remaining == 0:
                return picks
        return None

    def _grant(self, p: Pending, picks) -> None:
        now = time.time()
        ranks = {}
        for r, (cores, gpus) in picks.items():
            self.free[r][0].difference_update(cores)
            self.free[r][1].difference_update(gpus)
            ranks[r] = Rank(r, self.all.ranks[r].host, set(cores), set(gpus))
        exp = now + p.req.duration if p.req.duration else (self.all.expiration or 0.0)
        R = ResourceSet(ranks, {}, now, exp, p.req.nslots)
        self.allocated[p.id] = R
        Rd = R.to_dict()
        data = base64.b64encode(orjson.dumps(Rd)).decode()
        op = {"key": kvs_dir(p.id) + ".R", "flags": 0, "dirent": {"ver": 1, "type": "val", "data": data}}
        fut = self.broker.kvs.commit_ops("primary", [op])
        import asyncio

        async def respond():
            await fut
            self.respond(p.msg, {"id": p.id, "type": SUCCESS, "R": Rd,
                                 "annotations": {"sched": {"resource_summary": R.rlist()}}})

        asyncio.ensure_future(respond())

    def _schedule(self) -> None:
        while self.queue:
            p = self.queue[0]
            picks = self._place(p.req)
            if picks is None:
                return  # FCFS: the head blocks the rest
            self.queue.pop(0)
            del self.by_id[p.id]
            self._grant(p, picks)

    # ------------------------------------------------------------------ RPCs
    @method("alloc", owner_only=True)
    def alloc(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        try:
            req = Request.from_jobspec(require(p, "jobspec", dict, msg.topic))
        except Unsupported as exc:
            self.respond(msg, {"id": jobid, "type": DENY, "note": str(exc)})
            return NOREPLY
        why = self._fits_total(req) if self.all is not None else "no resources"
        if why:
            self.respond(msg, {"id": jobid, "type": DENY, "note": f"unsatisfiable request: {why}"})
            return NOREPLY
        pend = Pending(jobid, p.get("priority", 16), p.get("t_submit", 0.0), req, msg)
        bisect.insort(self.queue, pend)
        self.by_id[jobid] = pend
        if self.queue[0] is pend or len(self.queue) == 1:
            self._schedule()
        return NOREPLY

    @method("free", owner_only=True)
    def free_(self, msg):
        p = payload_of(msg)
        jobid = require(p, "id", int, msg.topic)
        R = self.allocated.pop(jobid, None)
        if R is None:
            self.broker.log(3, f"sched-simple: free of unknown job {jobid}")
            return NOREPLY
        for r, rk in R.ranks.items():
            if r in self.free:
                self.free[r][0].update(rk.cores)
                self.free[r][1].update(rk.gpus)
        self._schedule()
        return NOREPLY

    @method("cancel", owner_only=True)
    def cancel(self, msg):
        jobid = require(payload_of(msg), "id", int, msg.topic)
        pend = self.by_id.pop(jobid, None)
        if pend is not None:
            self.queue.remove(pend)
            self.respond(pend.msg, {"id": jobid, "type": CANCEL})
            self._schedule()
        return NOREPLY

    @method("prioritize", owner_only=True)
    def prioritize(self, msg):
        jobs = require(payload_of(msg), "jobs", list, msg.topic)
        changed = False
        for item in jobs:
            if not (isinstance(item, list) and len(item) == 2):
                raise FluxError(errno.EPROTO, "sched.prioritize: jobs must be [[id, priority], ...]")
            pend = self.by_id.get(item[0])
            if pend is not None:
                pend.priority = item[1]
                pend.key = (-item[1], pend.t_submit, pend.id)
                changed = True
        if changed:
            self.queue.sort()
            self._schedule()
        return NOREPLY

    @method("expiration", owner_only=True)
    def expiration(self, msg):
        p = payload_of(msg)
        R = self.allocated.get(require(p, "id", int, msg.topic))
        if R is not None:
            R.expiration = float(p.get("expiration", 0))
        return {}

    def _feasibility(self, msg):
        try:
            p = payload_of(msg)
            req = Request.from_jobspec(require(p, "jobspec", dict, msg.topic))
        except Unsupported as exc:
            self.respond_error(msg, errno.EINVAL, str(exc))
            return
        except FluxError as exc:
            self.respond_error(msg, exc.errno, exc.strerror)
            return
        why = self._fits_total(req) if self.all is not None else None
        if why:
            self.respond_error(msg, errno.EOVERFLOW, f"unsatisfiable request: {why}")
        else:
            self.respond(msg, {})

    @method("resource-status")
    def resource_status(self, msg):
        alloc = ResourceSet()
        for R in self.allocated.values():
            alloc = alloc.union(R)
        down = self.all.select_ranks(set(self.all.ranks) - self.up) if self.all else ResourceSet()
        return {"all": self.all.to_dict() if self.all else None, "down": down.to_dict(),
                "allocated": alloc.to_dict()}
