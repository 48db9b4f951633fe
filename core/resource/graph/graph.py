"""The resource graph: vertices, subsystems, aggregates, planners, and the operations
a scheduler needs (allocate, reserve, free, drain, add, remove, check).

The networkx DiGraph `g` holds every vertex (the Vertex objects are its nodes) and
every edge, with the edge attribute `subsystem` ("containment", "storage", ...).
The containment tree is mirrored on the vertices (parent/kids) for the walk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import attrs
import networkx as nx
from flux.core.resource.graph import writers
from flux.core.resource.graph.match import FUTURE, NOW, SAT, Walk, count_idle, window
from flux.core.resource.graph.planner import Planner
from flux.core.resource.graph.policy import MatchPolicy, parse_custom
from flux.core.resource.graph.request import ReqNode, Request
from flux.core.resource.graph.vertex import Vertex
from flux.core.util import idset as _idset

CONTAINMENT = "containment"
_BIG = 1 << 62
#: vertex types that get per-type planners (pruning over time), besides the root
PLANNED_TYPES = frozenset(("node",))


class MatchError(Exception):
    """A scheduling operation that cannot be done as asked (the message says why)."""


class InconsistentGraph(AssertionError):
    """check() found planners or aggregates that disagree with the allocations."""


@attrs.define(eq=False, repr=False)
class Allocation:
    """Resources held by one job, now (reserved=False) or from `starttime` (reserved)."""

    jobid: int
    starttime: float
    expiration: float  # 0.0: unlimited
    reserved: bool
    units: dict  # pool vertex -> amount held
    exclusive: list  # vertices held whole
    nslots: int
    graph: Any
    end: float = math.inf  # planner end (inf when unlimited)
    spans: list = attrs.Factory(list)  # (planner, span id, leaf or None)
    mask_nodes: list = attrs.Factory(list)  # nodes keeping this job's unit masks (mjobs)

    def to_rv1(self, scheduling: bool = True) -> dict:
        """R version 1 for this allocation, with the matched subgraph as JGF under
        `scheduling` (so a child instance can rebuild exactly these resources)."""
        return writers.alloc_rv1(self, scheduling)

    def ranks(self) -> list[int]:
        return sorted({u.rank for u in self.units if u.rank >= 0})

    def count(self, type: str) -> int:
        return sum(a for u, a in self.units.items() if u.type == type)

    @property
    def nnodes(self) -> int:
        return len(self.ranks())

    @property
    def ncores(self) -> int:
        return self.count("core")

    @property
    def ngpus(self) -> int:
        return self.count("gpu")

    def __repr__(self) -> str:
        kind = "reservation" if self.reserved else "allocation"
        return (f"<{kind} job={self.jobid} t={self.starttime:g} nodes={self.nnodes}"
                f" cores={self.ncores} gpus={self.ngpus}>")


class ResourceGraph:
    def __init__(self) -> None:
        self.g = nx.DiGraph()
        self.root: Vertex | None = None
        self._next_uid = 0
        self.by_rank: dict[int, Vertex] = {}
        self.jobs: dict[int, Allocation] = {}
        self.policy: MatchPolicy = MatchPolicy()
        self.prune = True
        self.starttime = 0.0
        self.expiration = 0.0
        self._ndown = 0
        self._nresv = 0
        self._gen = 0
        self._leaf_types: set[str] = set()
        self._linked_types: frozenset[str] = frozenset()
        self._contained_types: frozenset[str] = frozenset()
        self._prunable: frozenset[str] = frozenset()
        self._topv: Vertex | None = None
        self._index: dict[Vertex, dict] = {}
        self._shape_cache: dict = {}  # per graph shape: leaf lists, whole-node data, capacities
        self._dgen = 0  # bumped whenever a vertex is drained or undrained
        self.mstats = {"attempts": 0, "succeeded": 0, "failed": 0, "reserved": 0,
                       "time_total": 0.0, "time_max": 0.0}

    # ================================================================ loading
    @classmethod
    def load(cls, reader_name: str, data: Any) -> ResourceGraph:
        """Build a graph with the `flux.resource_reader` driver `reader_name`."""
        from flux.core.plugins import load_driver

        reader = load_driver("flux.resource_reader", reader_name)
        g = reader(data)
        if not isinstance(g, ResourceGraph):
            raise TypeError(f"resource reader '{reader_name}' returned {type(g).__name__},"
                            " not a ResourceGraph")
        return g

    @classmethod
    def from_rv1(cls, R: Any) -> ResourceGraph:
        from flux.core.resource.graph.readers.rv1 import read

        return read(R)

    # ============================================================ construction
    def add_vertex(self, parent: Vertex | None, type: str, *, id: int | None = None,
                   name: str | None = None, basename: str | None = None, rank: int | None = None,
                   size: int = 1, unit: str = "", properties: dict | None = None) -> Vertex:
        """Add a vertex under `parent` in containment (None: the root). Call finalize()
        (or attach()) once a batch of vertices is in."""
        if not isinstance(type, str) or not type:
            raise ValueError("a vertex type must be a non-empty string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"vertex size must be an integer >= 0, not {size!r}")
        if parent is None and self.root is not None:
            raise ValueError("the graph already has a root; give a parent")
        uid = self._next_uid
        self._next_uid += 1
        base = basename or type
        vid = uid if id is None else id
        if rank is None:
            rank = parent.rank if parent is not None else -1
        v = Vertex(uid, type, base, name or f"{base}{vid}", vid, rank, size, unit,
                   dict(properties) if properties else None)
        self.g.add_node(v)
        if parent is None:
            self.root = v
        else:
            v.parent = parent
            v.depth = parent.depth + 1
            parent.kids.append(v)
            self.g.add_edge(parent, v, subsystem=CONTAINMENT)
        if type == "node":
            v.node = v
        elif parent is not None:
            v.node = parent.node
        return v

    def link(self, src: Vertex, dst: Vertex, subsystem: str) -> None:
        """An edge in another subsystem (src can use dst: e.g. node -> storage)."""
        if subsystem == CONTAINMENT:
            raise ValueError("use add_vertex for containment edges")
        self.g.add_edge(src, dst, subsystem=subsystem)
        src.links.append(dst)

    def finalize(self) -> ResourceGraph:
        """Compute totals, aggregates and planners after construction."""
        if self.root is None:
            raise ValueError("the resource graph is empty")
        self._recompute(self.root, False, store=True)
        self._refresh_types()
        for v in self.root.walk():
            if v.type == "node" and v.rank >= 0:
                if v.rank in self.by_rank and self.by_rank[v.rank] is not v:
                    raise ValueError(f"rank {v.rank} appears on two nodes"
                                     f" ({self.by_rank[v.rank].name}, {v.name})")
                self.by_rank[v.rank] = v
            self._init_plans(v)
        self._sort_kids(self.root)
        return self

    def _init_plans(self, v: Vertex) -> None:
        if v.type == "node" and v.mall is None:
            mall: dict[str, int] = {}
            count: dict[str, int] = {}
            for leaf in v.leaves():
                if leaf.size == 1 and leaf is not v:
                    b = count.get(leaf.type, 0)
                    count[leaf.type] = b + 1
                    leaf.bit = b
                    mall[leaf.type] = mall.get(leaf.type, 0) | (1 << b)
            v.mall = mall
            v.mjobs = {}
        if v.kids and (v.type in PLANNED_TYPES or v is self.root):
            # a node's unit leaves are counted over time by its masks: it plans only
            # the types that have pools (e.g. memory)
            mall = v.mall if v is not self.root else None
            v.plans = {t: Planner(n) for t, n in v.total.items() if t in self._leaf_types
                       and not (mall and t in mall and mall[t].bit_count() == n)}

    def busy_masks(self, node: Vertex, t: float, end: float) -> dict[str, int]:
        """{type: mask} of the unit leaves under `node` that jobs hold during [t, end)."""
        busy: dict[str, int] = {}
        for s, e, masks in node.mjobs.values():
            if s < end and e > t:
                for ty, m in masks.items():
                    busy[ty] = busy.get(ty, 0) | m
        return busy

    def usable(self, node: Vertex, t: float, end: float,
               busy: dict[str, int] | None = None) -> dict[str, int]:
        """Unit leaves of each type under `node` that no job holds during [t, end)."""
        if busy is None:
            busy = self.busy_masks(node, t, end)
        if not busy:
            return {ty: m.bit_count() for ty, m in node.mall.items()}
        return {ty: (m & ~busy.get(ty, 0)).bit_count() for ty, m in node.mall.items()}

    def leaf_list(self, v: Vertex) -> list[Vertex]:
        """v's leaves, in walk order (cached until the graph's shape changes)."""
        ls = self._shape_cache.get(v)
        if ls is None:
            ls = self._shape_cache[v] = list(v.leaves())
        return ls

    def pool_leaves(self, v: Vertex) -> list[Vertex]:
        """v's leaves that are not unit leaves of a node (those have planners)."""
        key = (v, "pools")
        ls = self._shape_cache.get(key)
        if ls is None:
            ls = self._shape_cache[key] = [x for x in self.leaf_list(v) if x.bit < 0]
        return ls

    def _whole(self, node: Vertex) -> tuple:
        """(inner vertices with their leaf-unit sums, {leaf: size}, {leaf type: units},
        unit sum) of a node, for taking or releasing it whole (cached)."""
        key = (node, "whole")
        w = self._shape_cache.get(key)
        if w is None:
            inner = []
            units: dict[Vertex, int] = {}
            counts: dict[str, int] = {}
            for v in node.walk():
                if v.kids:
                    inner.append((v, sum(x.size for x in v.leaves())))
                else:
                    units[v] = v.size
                    counts[v.type] = counts.get(v.type, 0) + v.size
            w = self._shape_cache[key] = (inner, units, counts, sum(units.values()))
        return w

    def whole_units(self, node: Vertex) -> dict[Vertex, int]:
        return self._whole(node)[1]

    def whole_counts(self, node: Vertex) -> dict[str, int]:
        return self._whole(node)[2]

    def _take_whole(self, node: Vertex) -> None:
        """Allocate all of an idle node, none of it drained: every vertex under it
        becomes fully used, its ancestors lose what it had free (its totals)."""
        inner, units, _counts, us = self._whole(node)
        for leaf, n in units.items():
            leaf.used = n
        for v, n in inner:
            v.used = n
            f = v.free
            for t in f:
                f[t] = 0
        delta = node.total
        a = node.parent
        while a is not None:
            f = a.free
            for t, n in delta.items():
                f[t] -= n
            if not a.used:  # idle -> busy
                count_idle(a, -1)
            a.used += us
            a = a.parent

    def _untake_whole(self, node: Vertex) -> None:
        """Undo _take_whole (the node must be held whole by one allocation, up)."""
        inner, units, _counts, us = self._whole(node)
        for leaf in units:
            leaf.used = 0
        for v, _n in inner:
            v.used = 0
            v.free.update(v.total)
        delta = node.total
        a = node.parent
        while a is not None:
            f = a.free
            for t, n in delta.items():
                f[t] += n
            a.used -= us
            if not a.used:  # busy -> idle
                count_idle(a, 1)
            a = a.parent

    def _static_caps(self, need: tuple, is_slot: bool, excl: bool) -> dict[Vertex, int]:
        """{node: how many of a top-level slot (or 1 for a node) fit it when idle}, for
        the nodes where that is at least one (cached per shape and graph generation)."""
        key = ("caps", need, is_slot, excl)
        c = self._shape_cache.get(key)
        if c is None:
            c = {}
            for v in self.by_rank.values():
                mall = v.mall
                if mall is None:
                    continue
                k = _BIG
                for ty, n in need:
                    m = mall.get(ty)
                    a = m.bit_count() if m is not None else v.total.get(ty, 0)
                    k = min(k, a // n)
                if k > 0:
                    c[v] = k if is_slot else 1
            self._shape_cache[key] = c
        return c

    def _whole_fit(self, node: Vertex, c: ReqNode) -> int | None:
        """How many slots c's children place in `node` when nothing there is in use
        (-1: they do not fit); None when part of the node is drained (ask the walk).
        Same for every idle window, so cached per request and graph generation."""
        key = (self._gen, self._dgen)
        cache = c._whole
        if cache is None or cache[0] is not self or cache[1] != key:
            cache = c._whole = (self, key, {})
        fits = cache[2]
        k = fits.get(node, False)
        if k is not False:
            return k
        if self._ndown and any(x.down for x in node.walk()):
            k = None
        else:
            w = Walk(self, SAT, 0.0, math.inf)
            ok = all(w.satisfy(node, ch) for ch in c.children)
            k = w.units()[2] if ok else -1
        fits[node] = k
        return k

    def _refresh_types(self) -> None:
        leaf, linked, allt = set(), set(), set()
        for v in self.g:
            allt.add(v.type)
            if not v.kids:
                leaf.add(v.type)
        for _a, b, sub in self.g.edges(data="subsystem"):
            if sub != CONTAINMENT:
                linked.add(b.type)
        self._leaf_types = leaf
        self._linked_types = frozenset(linked)
        self._contained_types = frozenset(allt - linked)
        self._prunable = frozenset(allt - linked)
        self._gen += 1
        self._topv = None
        self._index.clear()
        self._shape_cache.clear()

    def _recompute(self, v: Vertex, eff_down: bool, store: bool) -> tuple[dict, dict, int]:
        """(total, free, used) of v's subtree from its leaves; stored if `store`."""
        down = eff_down or v.down
        if not v.kids:
            total = {v.type: v.size}
            free = {} if down else {v.type: v.size - v.used}
            if store:
                v.total = total
            return total, free, v.used
        total: dict[str, int] = {v.type: 1}
        free: dict[str, int] = {v.type: 0}
        used = 0
        for k in v.kids:
            t2, f2, u2 = self._recompute(k, down, store)
            used += u2
            for t, n in t2.items():
                total[t] = total.get(t, 0) + n
            for t, n in f2.items():
                free[t] = free.get(t, 0) + n
        if not down and used == 0:
            free[v.type] += 1
        for t in total:
            free.setdefault(t, 0)
        if store:
            v.total, v.free, v.used = total, free, used
        return total, free, used

    def _sort_kids(self, start: Vertex) -> None:
        key = self.policy.sort_key
        for v in start.walk():
            if len(v.kids) > 1:
                probe = key(v.kids[0])
                if probe is None:
                    v.kids.sort(key=lambda u: u.uid)
                else:
                    v.kids.sort(key=lambda u: (key(u), u.uid))

    def _top(self) -> Vertex:
        """A virtual parent of the root, so a request may name the root's own type."""
        t = self._topv
        if t is None or t.kids[0] is not self.root:
            t = Vertex(-1, "", "", "", -1)
            t.kids = [self.root]
            t.total = self.root.total
            t.free = self.root.free
            t.plans = self.root.plans
            self._topv = t
        t.free = self.root.free
        return t

    # ================================================================ policy
    def set_policy(self, policy: Any) -> None:
        """A match-policy driver instance, or its name (or Fluxion's custom form
        'policy=low node_exclusive=true'). An unknown name raises LookupError listing
        the installed ones."""
        if isinstance(policy, str):
            policy = load_policy(policy)
        if not isinstance(policy, MatchPolicy):
            for attr in ("sort_key", "order", "attempts"):
                if not callable(getattr(policy, attr, None)):
                    raise TypeError(f"match policy {policy!r} has no {attr}() method")
        self.policy = policy
        if self.root is not None:
            self._sort_kids(self.root)

    # ============================================================== matching
    def _need_of(self, req: ReqNode) -> tuple:
        d = self._unit_need(req)
        return tuple((t, n) for t, n in d.items() if n > 0 and t in self._prunable)

    def _unit_need(self, req: ReqNode) -> dict[str, int]:
        if req.type != "slot" and req.type in self._leaf_types:
            return {req.type: 1}
        d: dict[str, int] = {}
        if req.type != "slot" and req.exclusive:
            d[req.type] = 1
        for c in req.children:
            for t, n in self._unit_need(c).items():
                d[t] = d.get(t, 0) + n * c.lo
        return d

    def _run(self, request: Request, mode: int, t: float, duration: float,
             seed: dict | None = None) -> Walk | None:
        cons = request.constraint
        for extra in self.policy.attempts(self, request):
            if cons is not None and extra is not None:
                def filt(v, a=cons, b=extra):
                    return a(v) and b(v)
            else:
                filt = cons if extra is None else extra
            w = Walk(self, mode, t, duration, filt)
            if seed is not None:
                w.bcache = dict(seed)
            if w.match(request):
                return w
        return None

    def _request(self, req: Any) -> Request:
        if isinstance(req, Request):
            return req
        if isinstance(req, dict):
            return Request.from_jobspec(req)
        raise TypeError(f"expected a Request or a jobspec dict, not {type(req).__name__}")

    def _check_jobid(self, jobid: int) -> None:
        if jobid in self.jobs:
            kind = "a reservation" if self.jobs[jobid].reserved else "an allocation"
            raise MatchError(f"job {jobid} already holds {kind}")

    def allocate(self, req: Request | dict, jobid: int, now: float,
                 duration: float | None = None) -> Allocation | None:
        """Resources for `jobid` from `now` for `duration` seconds (None: the request's
        own; 0 or inf: unlimited), or None if the request cannot start now."""
        req = self._request(req)
        self._check_jobid(jobid)
        if duration is None:
            duration = req.duration
        start, d = window(now, duration)
        t0 = time.perf_counter()
        w = self._run(req, NOW, start, d)
        self._account(t0, w is not None)
        if w is None:
            return None
        return self._commit(w, jobid, start, d, reserved=False)

    def reserve(self, req: Request | dict, jobid: int, now: float,
                duration: float | None = None) -> Allocation | None:
        """Hold resources for `jobid` from the earliest time >= now they are free for
        `duration`; None if that never happens (the request cannot fit the graph)."""
        req = self._request(req)
        self._check_jobid(jobid)
        if duration is None:
            duration = req.duration
        start, d = window(now, duration)
        if not self.satisfiable(req)[0]:
            return None
        t0 = time.perf_counter()
        w = None
        for t, seed in self._candidate_times(req, start, d):
            w = self._run(req, FUTURE, t, d, seed)
            if w is not None:
                start = t
                break
        self._account(t0, w is not None)
        if w is None:
            return None
        self.mstats["reserved"] += 1
        return self._commit(w, jobid, start, d, reserved=True)

    def _candidate_times(self, req: Request, now: float, d: float) -> Iterable[tuple]:
        """(t, busy masks of the nodes known at t or None): now, then each time a span
        ends, skipping times at which the root's planners or the nodes' free units show
        the request cannot fit."""
        root = self.root
        need = {t: n for t, n in req.counts().items() if root.plans and t in root.plans}
        ends = {now}
        for job in self.jobs.values():
            if now < job.end < math.inf:
                ends.add(job.end)
        sweep = _ShapeSweep.make(self, req, d)
        for t in sorted(ends):
            if not all(root.plans[ty].avail_during(t, d) >= n for ty, n in need.items()):
                continue
            if sweep is not None:
                if not sweep.ok(t):
                    continue
                yield t, sweep.seed()
            else:
                yield t, None

    def satisfiable(self, req: Request | dict) -> tuple[bool, str]:
        """Could the request ever be met by this graph? (True, "") or (False, reason).

        Use (allocations, reservations) and drained state are ignored: drained vertices
        are part of the instance and come back, so a request that would fit once they
        are undrained is satisfiable (it waits), not refused."""
        try:
            req = self._request(req)
        except ValueError as exc:
            return False, str(exc)
        c = req._sat
        if c is not None and c[0] is self and c[1] == self._gen:
            return c[2]
        out = self._satisfiable(req)
        req._sat = (self, self._gen, out)
        return out

    def _satisfiable(self, req: Request) -> tuple[bool, str]:
        root = self.root
        for t, n in req.counts().items():
            have = root.total.get(t, 0) if t in self._contained_types else sum(
                v.size for v in self.g if v.type == t)
            if n > have:
                return False, (f"requested {n} {t}{'s' if n != 1 else ''} but the resource"
                               f" graph has {'only ' if have else ''}{have}")
        if req.constraint is not None and not any(req.constraint(v) for v in self.by_rank.values()):
            return False, "no node matches the job's constraints"
        if self._run(req, SAT, 0.0, math.inf) is None:
            return False, f"no set of resources in the graph has the shape requested ({_shape(req)})"
        return True, ""

    def _account(self, t0: float, ok: bool) -> None:
        dt = time.perf_counter() - t0
        m = self.mstats
        m["attempts"] += 1
        m["succeeded" if ok else "failed"] += 1
        m["time_total"] += dt
        if dt > m["time_max"]:
            m["time_max"] = dt

    def _commit(self, w: Walk, jobid: int, start: float, d: float, reserved: bool) -> Allocation:
        units, excl, nslots = w.units()
        end = start + d
        if math.isinf(d):
            expiration = self.expiration if self.expiration > start else 0.0
        else:
            expiration = end
        spans: list = []
        per_node: dict[tuple[Vertex, str], int] = {}
        per_type: dict[str, int] = {}
        for leaf, amt in w.part.items():
            if leaf.bit < 0:  # unit leaves of a node are tracked by its masks (mjobs)
                p = leaf.plan
                if p is None:
                    p = leaf.plan = Planner(leaf.size)
                spans.append((p, p.add_span(start, end, amt), leaf))
            node = leaf.node
            if node is not None and node.plans and leaf.type in node.plans:
                key = (node, leaf.type)
                per_node[key] = per_node.get(key, 0) + amt
            per_type[leaf.type] = per_type.get(leaf.type, 0) + amt
        for node in w.whole_nodes:  # taken whole: counts and masks are the node's own
            for leaf in self.pool_leaves(node):
                p = leaf.plan
                if p is None:
                    p = leaf.plan = Planner(leaf.size)
                spans.append((p, p.add_span(start, end, leaf.size), leaf))
            plans = node.plans
            for ty, n in self.whole_counts(node).items():
                if plans and ty in plans:
                    per_node[(node, ty)] = n
                per_type[ty] = per_type.get(ty, 0) + n
        for (node, ty), amt in per_node.items():
            p = node.plans.get(ty)
            if p is not None:
                spans.append((p, p.add_span(start, end, amt), node))
        mask_nodes = self._record_masks(jobid, start, end, w.part)
        for node in w.whole_nodes:
            if node.mall is not None:
                node.mjobs[jobid] = (start, end, dict(node.mall))
                mask_nodes.append(node)
        rplans = self.root.plans or {}
        for ty, amt in per_type.items():
            p = rplans.get(ty)
            if p is not None:
                spans.append((p, p.add_span(start, end, amt), None))
        alloc = Allocation(jobid, start, expiration, reserved, units, excl, nslots, self,
                           end, spans, mask_nodes)
        self.jobs[jobid] = alloc
        if reserved:
            self._nresv += 1
        return alloc

    def _record_masks(self, jobid: int, start: float, end: float, units: dict) -> list:
        per: dict[Vertex, dict[str, int]] = {}
        for leaf in units:
            if leaf.bit >= 0:
                m = per.get(leaf.node)
                if m is None:
                    m = per[leaf.node] = {}
                m[leaf.type] = m.get(leaf.type, 0) | (1 << leaf.bit)
        for node, m in per.items():
            node.mjobs[jobid] = (start, end, m)
        return list(per)

    # ============================================================ releasing
    def free(self, jobid: int, ranks: Iterable[int] | str | None = None) -> None:
        """Release a job's allocation or reservation (only `ranks` of it, if given)."""
        alloc = self.jobs.get(jobid)
        if alloc is None:
            raise MatchError(f"job {jobid} holds no resources")
        if ranks is not None:
            keep = _ranks(ranks)
            if set(alloc.ranks()) - keep:
                self._free_part(alloc, keep)
                return
        del self.jobs[jobid]
        for p, sid, _v in alloc.spans:
            p.rem_span(sid)
        for node in alloc.mask_nodes:
            node.mjobs.pop(jobid, None)
        if alloc.reserved:
            self._nresv -= 1
            return
        units = alloc.units
        done = None
        for v in alloc.exclusive:
            if v.mall is not None and self._held_whole(v, units):
                self._untake_whole(v)
                if done is None:
                    done = set()
                done.add(v)
        for leaf, amt in units.items():
            if done is None or leaf.node not in done:
                self._apply(leaf, -amt)

    def _held_whole(self, node: Vertex, units: dict) -> bool:
        """Does an allocation hold all of `node`, with nothing drained on its path?"""
        if self._ndown and (self._eff_down(node) or any(x.down for x in node.walk())):
            return False
        whole = self.whole_units(node)
        first = next(iter(whole), None)
        return first is not None and units.get(first) == whole[first] \
            and node.used == self._whole(node)[3] \
            and all(units.get(x) == n for x, n in whole.items())

    def _free_part(self, alloc: Allocation, ranks: set[int]) -> None:
        gone = [u for u in alloc.units if u.rank in ranks]
        if not gone:
            return
        gone_set = set(gone)
        per_type: dict[str, int] = {}
        for u in gone:
            per_type[u.type] = per_type.get(u.type, 0) + alloc.units[u]
        keep_spans = []
        for p, sid, v in alloc.spans:
            if v is None:
                keep_spans.append((p, sid, v))
            elif v in gone_set or (v.type == "node" and v.rank in ranks):
                p.rem_span(sid)
            else:
                keep_spans.append((p, sid, v))
        final = []
        for p, sid, v in keep_spans:
            if v is None:  # a root planner span: shrink it by what was released
                s, e, a = p.spans[sid]
                ty = next((t for t, q in self.root.plans.items() if q is p), None)
                left = a - per_type.get(ty, 0)
                p.rem_span(sid)
                if left > 0:
                    final.append((p, p.add_span(s, e, left), None))
            else:
                final.append((p, sid, v))
        alloc.spans = final
        for node in {u.node for u in gone if u.bit >= 0}:
            node.mjobs.pop(alloc.jobid, None)
        alloc.mask_nodes = [v for v in alloc.mask_nodes if v.rank not in ranks]
        for u in gone:
            amt = alloc.units.pop(u)
            if not alloc.reserved:
                self._apply(u, -amt)
        alloc.exclusive = [v for v in alloc.exclusive if v.rank not in ranks]
        if not alloc.units:
            self.free(alloc.jobid)

    def unreserve(self, jobid: int) -> None:
        a = self.jobs.get(jobid)
        if a is not None and a.reserved:
            self.free(jobid)

    def unreserve_all(self) -> None:
        for jobid in [j for j, a in self.jobs.items() if a.reserved]:
            self.free(jobid)

    def claim(self, jobid: int, R: dict, now: float | None = None) -> Allocation:
        """Mark the resources of an existing job's R as allocated (a scheduler restarting
        or told of running jobs at hello). ValueError if R names resources that are not
        in the graph or already held."""
        from flux.core.resource.rv1 import ResourceSet

        self._check_jobid(jobid)
        rs = ResourceSet.from_dict(R)
        units: dict[Vertex, int] = {}
        for r, rk in rs.ranks.items():
            node = self.by_rank.get(r)
            if node is None:
                raise ValueError(f"job {jobid}: R names rank {r}, which is not in the graph")
            idx = self._leaf_index(node)
            for ty, ids in (("core", rk.cores), ("gpu", rk.gpus)):
                for i in ids:
                    leaf = idx.get((ty, i))
                    if leaf is None:
                        raise ValueError(f"job {jobid}: R names {ty}{i} on rank {r},"
                                         " which is not in the graph")
                    if leaf.used >= leaf.size:
                        raise ValueError(f"job {jobid}: {ty}{i} on rank {r} is already allocated")
                    units[leaf] = leaf.size - leaf.used
        start = rs.starttime or (now if now is not None else time.time())
        d = (rs.expiration - start) if rs.expiration > start else math.inf
        w = Walk(self, SAT, start, d)
        for leaf, amt in units.items():
            self._apply(leaf, amt)
            w.log.append((leaf, amt))
        w.mode = NOW  # units already applied; _commit only adds spans
        alloc = self._commit(w, jobid, start, d, reserved=False)
        alloc.nslots = rs.nslots or 0
        return alloc

    def _leaf_index(self, node: Vertex) -> dict:
        idx = self._index.get(node)
        if idx is None:
            idx = {(v.type, v.id): v for v in node.leaves()}
            self._index[node] = idx
        return idx

    # ==================================================== aggregates (slow path)
    def _eff_down(self, v: Vertex) -> bool:
        while v is not None:
            if v.down:
                return True
            v = v.parent
        return False

    def _apply(self, leaf: Vertex, amt: int) -> None:
        """Change a pool vertex's use by amt (+ allocate, - free), whatever is drained."""
        path = []
        v = leaf
        while v is not None:
            path.append(v)
            v = v.parent
        hi = -1
        for i, v in enumerate(path):
            if v.down:
                hi = i
        t = leaf.type
        leaf_live = hi < 0
        for i, v in enumerate(path):
            old = v.used
            v.used = old + amt
            if i == 0:
                continue
            if i > hi:  # v is up
                if leaf_live:
                    v.free[t] -= amt
                flip = -1 if (old == 0 and v.used) else (1 if (old and v.used == 0) else 0)
                if flip:
                    count_idle(v, flip)

    # ========================================================= run-time changes
    def _nodes_of(self, ranks: Any) -> list[Vertex]:
        rs = _ranks(ranks)
        missing = sorted(r for r in rs if r not in self.by_rank)
        if missing:
            raise ValueError(f"rank(s) {_idset.encode(missing)} not in the resource graph")
        return [self.by_rank[r] for r in sorted(rs)]

    def drain(self, ranks: Any) -> None:
        """Take nodes out of scheduling (running jobs keep what they hold)."""
        for v in self._nodes_of(ranks):
            self.set_down(v, True)

    def undrain(self, ranks: Any) -> None:
        for v in self._nodes_of(ranks):
            self.set_down(v, False)

    def set_down(self, v: Vertex, down: bool) -> None:
        if v.down == down:
            return
        self._dgen += 1
        above = self._eff_down(v.parent) if v.parent is not None else False
        if down:
            if not above:
                self._adjust_ancestors(v, v.free, -1)
            v.down = True
            self._ndown += 1
            self._recompute(v, True, store=True)
        else:
            v.down = False
            self._ndown -= 1
            self._recompute(v, above, store=True)
            if not above:
                self._adjust_ancestors(v, v.free, +1)

    def set_property(self, ranks: Any, name: str, value: str = "") -> None:
        """Give nodes a property (RFC 28 property-add); constraints see it at once."""
        if not isinstance(name, str) or not name or any(c in name for c in "!&'\"^`|()"):
            raise ValueError(f"invalid property name {name!r}")
        for v in self._nodes_of(ranks):
            v.properties[name] = value
        self._gen += 1  # cached satisfiability may change

    def remove_property(self, ranks: Any, name: str) -> None:
        for v in self._nodes_of(ranks):
            v.properties.pop(name, None)
        self._gen += 1

    def _adjust_ancestors(self, v: Vertex, delta: dict, sign: int) -> None:
        for a in v.ancestors():
            f = a.free
            for t, n in delta.items():
                f[t] = f.get(t, 0) + sign * n

    def add(self, other: ResourceGraph | dict) -> list[int]:
        """Graft another graph's (or R's) nodes under this graph's root; returns the
        ranks added. ValueError if a rank or vertex name is already here."""
        if isinstance(other, dict):
            other = ResourceGraph.from_rv1(other)
        if not isinstance(other, ResourceGraph) or other.root is None:
            raise TypeError("add() takes a ResourceGraph or an R dict")
        dup = sorted(set(other.by_rank) & set(self.by_rank))
        if dup:
            raise ValueError(f"rank(s) {_idset.encode(dup)} are already in the resource graph")
        if other.jobs:
            raise ValueError("cannot add a graph that holds allocations")
        # graft the other root's children (or the root itself if it is not a cluster)
        tops = other.root.kids if other.root.type == self.root.type else [other.root]
        added = []
        mapping: dict[Vertex, Vertex] = {}
        for top in tops:
            added.extend(self._graft(top, self.root, mapping))
        for a, b, sub in other.g.edges(data="subsystem"):
            if sub != CONTAINMENT and a in mapping and b in mapping:
                self.link(mapping[a], mapping[b], sub)
        for top in tops:
            nv = mapping[top]
            self._recompute(nv, self._eff_down(self.root), store=True)
            for a in nv.ancestors():
                for t, n in nv.total.items():
                    a.total[t] = a.total.get(t, 0) + n
                    a.free.setdefault(t, 0)
            if not self._eff_down(self.root):
                self._adjust_ancestors(nv, nv.free, +1)
        self._refresh_types()
        for v in mapping.values():
            self._init_plans(v)
            if v.type == "node" and v.rank >= 0:
                self.by_rank[v.rank] = v
        self._resize_root_plans()
        self._sort_kids(self.root)
        return sorted(added)

    def _graft(self, src: Vertex, parent: Vertex, mapping: dict) -> list[int]:
        nv = self.add_vertex(parent, src.type, id=src.id, name=src.name, basename=src.basename,
                             rank=src.rank, size=src.size, unit=src.unit,
                             properties=src.properties)
        nv.down = src.down
        if nv.down:
            self._ndown += 1
        mapping[src] = nv
        ranks = [nv.rank] if nv.type == "node" and nv.rank >= 0 else []
        for k in src.kids:
            ranks.extend(self._graft(k, nv, mapping))
        return ranks

    def _resize_root_plans(self) -> None:
        root = self.root
        if root.plans is None:
            root.plans = {}
        for t, n in root.total.items():
            if t in self._leaf_types:
                p = root.plans.get(t)
                if p is None:
                    root.plans[t] = Planner(n)
                else:
                    p.update_total(n)

    def remove(self, ranks: Any) -> None:
        """Remove nodes. Refused (ValueError naming the jobs) while any job is
        allocated on them; reservations there are dropped."""
        nodes = self._nodes_of(ranks)
        rs = {v.rank for v in nodes}
        busy = sorted(j for j, a in self.jobs.items() if not a.reserved and rs & set(a.ranks()))
        if busy:
            raise ValueError(f"cannot remove rank(s) {_idset.encode(rs)}: job(s) "
                             f"{', '.join(map(str, busy))} hold resources there; drain them"
                             " and remove them once those jobs end")
        for j in [j for j, a in self.jobs.items() if a.reserved and rs & set(a.ranks())]:
            self.free(j)
        for v in nodes:
            if v is self.root:
                raise ValueError("cannot remove the root of the resource graph")
            eff = self._eff_down(v)
            for a in v.ancestors():
                for t, n in v.total.items():
                    a.total[t] -= n
                    if not a.total[t]:
                        del a.total[t]
                if not eff:
                    for t, n in v.free.items():
                        a.free[t] -= n
                for t in list(a.free):
                    if t not in a.total:
                        del a.free[t]
            v.parent.kids.remove(v)
            sub = list(v.walk())
            self._ndown -= sum(1 for x in sub if x.down)
            self.g.remove_nodes_from(sub)
            for x in sub:
                x.parent = None if x is v else x.parent
            for other in self.g:
                if other.links:
                    other.links = [u for u in other.links if u in self.g]
            del self.by_rank[v.rank]
            self._index.pop(v, None)
        self._refresh_types()
        self._resize_root_plans()

    # =================================================================== views
    def vertices(self, type: str | None = None) -> list[Vertex]:
        return [v for v in self.root.walk() if type is None or v.type == type]

    def subsystems(self) -> list[str]:
        subs = {CONTAINMENT}
        subs.update(s for _a, _b, s in self.g.edges(data="subsystem"))
        return sorted(subs, key=lambda s: (s != CONTAINMENT, s))

    def ranks(self) -> list[int]:
        return sorted(self.by_rank)

    def down_ranks(self) -> list[int]:
        return sorted(r for r, v in self.by_rank.items() if self._eff_down(v))

    def to_rv1(self, scheduling: bool = False) -> dict:
        return writers.graph_rv1(self, scheduling)

    def to_jgf(self) -> dict:
        return writers.graph_jgf(self)

    def stats(self) -> dict:
        root = self.root
        types = {}
        down_units: dict[str, int] = {}
        for v in self.by_rank.values():
            if self._eff_down(v):
                for t, n in v.total.items():
                    down_units[t] = down_units.get(t, 0) + n
        for t in sorted(root.total):
            types[t] = {"total": root.total[t], "free": root.free.get(t, 0),
                        "down": down_units.get(t, 0)}
        m = dict(self.mstats)
        m["mean"] = m["time_total"] / m["attempts"] if m["attempts"] else 0.0
        return {
            "vertices": self.g.number_of_nodes(),
            "edges": self.g.number_of_edges(),
            "subsystems": self.subsystems(),
            "types": types,
            "jobs": {"allocated": sum(1 for a in self.jobs.values() if not a.reserved),
                     "reserved": self._nresv},
            "policy": getattr(self.policy, "name", type(self.policy).__name__),
            "prune": self.prune,
            "match": m,
        }

    def check(self) -> None:
        """Recompute every aggregate and planner total from the allocations; raise
        InconsistentGraph naming the first difference."""
        held: dict[Vertex, int] = {}
        leaf_spans: dict[Vertex, list] = {}
        plan_spans: dict[tuple[Vertex, str], dict] = {}
        masks: dict[tuple[Vertex, int], dict] = {}
        root = self.root
        for jobid, a in self.jobs.items():
            for leaf, amt in a.units.items():
                if leaf not in self.g:
                    raise InconsistentGraph(f"job {jobid} holds {leaf!r}, not in the graph")
                if not a.reserved:
                    held[leaf] = held.get(leaf, 0) + amt
                if leaf.bit >= 0:
                    m = masks.setdefault((leaf.node, jobid), {})
                    m[leaf.type] = m.get(leaf.type, 0) | (1 << leaf.bit)
                else:
                    leaf_spans.setdefault(leaf, []).append((a.starttime, a.end, amt))
                for v in (leaf.node, root):
                    if v is not None and v.plans is not None and leaf.type in v.plans:
                        d = plan_spans.setdefault((v, leaf.type), {})
                        d[(a.starttime, a.end)] = d.get((a.starttime, a.end), 0) + amt
        for v in self.root.walk():
            if v.kids:
                continue
            if v.used != held.get(v, 0):
                raise InconsistentGraph(f"{v.path()}: used {v.used}, allocations hold"
                                        f" {held.get(v, 0)}")
            if v.used > v.size:
                raise InconsistentGraph(f"{v.path()}: {v.used} used of {v.size}")
            want = sorted(leaf_spans.get(v, ()))
            have = sorted(v.plan.spans.values()) if v.plan is not None else []
            if want != have:
                raise InconsistentGraph(f"{v.path()}: planner spans {have}, jobs {want}")
            if v.plan is not None:
                why = v.plan.verify()
                if why:
                    raise InconsistentGraph(f"{v.path()}: planner {why}")
                for s, _e, _a in v.plan.spans.values():
                    if v.plan.avail_at(s) < 0:
                        raise InconsistentGraph(f"{v.path()}: over-committed at t={s}")
        self._check_masks(masks)
        self._check_aggregates(self.root, False)
        for v in self.root.walk():
            if not v.plans:
                continue
            for t, p in v.plans.items():
                if p.total != v.total.get(t, 0):
                    raise InconsistentGraph(f"{v.path()}: {t} planner total {p.total},"
                                            f" expected {v.total.get(t, 0)}")
                why = p.verify()
                if why:
                    raise InconsistentGraph(f"{v.path()}: {t} planner {why}")
                have: dict = {}
                for s, e, amt in p.spans.values():
                    have[(s, e)] = have.get((s, e), 0) + amt
                want = plan_spans.get((v, t), {})
                if want != have:
                    raise InconsistentGraph(f"{v.path()}: {t} planner spans {have},"
                                            f" jobs {want}")
        nresv = sum(1 for a in self.jobs.values() if a.reserved)
        if nresv != self._nresv:
            raise InconsistentGraph(f"{self._nresv} reservations counted, {nresv} held")
        ndown = sum(1 for v in self.g if v.down)
        if ndown != self._ndown:
            raise InconsistentGraph(f"{self._ndown} drained vertices counted, {ndown} found")

    def _check_masks(self, want: dict) -> None:
        """Each node's per-job unit masks match the allocations, and no unit leaf is
        held by two jobs at once."""
        for v in self.by_rank.values():
            if v.mjobs is None:
                continue
            for jobid, (s, e, m) in v.mjobs.items():
                a = self.jobs.get(jobid)
                if a is None or (a.starttime, a.end) != (s, e) or want.get((v, jobid)) != m:
                    raise InconsistentGraph(f"{v.path()}: job {jobid} masks {m} over [{s}, {e}),"
                                            f" allocations say {want.get((v, jobid))}")
            entries = sorted(v.mjobs.items(), key=lambda x: x[1][0])
            for i, (j1, (s1, e1, m1)) in enumerate(entries):
                for j2, (s2, _e2, m2) in entries[i + 1:]:
                    if s2 >= e1:
                        break
                    for ty, b in m1.items():
                        if b & m2.get(ty, 0):
                            raise InconsistentGraph(f"{v.path()}: jobs {j1} and {j2} hold the"
                                                    f" same {ty} at t={max(s1, s2)}")
        missing = [k for k in want if k[0].mjobs is None or k[1] not in k[0].mjobs]
        if missing:
            v, jobid = missing[0]
            raise InconsistentGraph(f"{v.path()}: job {jobid} holds units there, no mask kept")

    def _check_aggregates(self, v: Vertex, eff_down: bool) -> tuple[dict, dict, int]:
        """Like _recompute (store=False), comparing each vertex on the way up."""
        down = eff_down or v.down
        if not v.kids:
            total = {v.type: v.size}
            if v.total != total:
                raise InconsistentGraph(f"{v.path()}: total {v.total}, expected {total}")
            return total, ({} if down else {v.type: v.size - v.used}), v.used
        total: dict[str, int] = {v.type: 1}
        free: dict[str, int] = {}
        used = 0
        for k in v.kids:
            t2, f2, u2 = self._check_aggregates(k, down)
            used += u2
            for t, n in t2.items():
                total[t] = total.get(t, 0) + n
            for t, n in f2.items():
                free[t] = free.get(t, 0) + n
        if not down and used == 0:
            free[v.type] = free.get(v.type, 0) + 1
        if total != v.total:
            raise InconsistentGraph(f"{v.path()}: total {v.total}, expected {total}")
        mine = {t: n for t, n in v.free.items() if n}
        exp = {t: n for t, n in free.items() if n}
        if mine != exp:
            raise InconsistentGraph(f"{v.path()}: free {mine}, expected {exp}")
        if used != v.used:
            raise InconsistentGraph(f"{v.path()}: used {v.used}, expected {used}")
        return total, free, used


class _ShapeSweep:
    """For a request of one top-level slot or node: sweep the candidate start times
    in order, keeping per node the jobs whose window overlaps [t, t+d) and from them
    the node's exact count of free unit leaves, so a start time where too few nodes
    (or slots) fit is skipped without walking the graph.

    Nodes start at their capacity with nothing in use (cached per request shape);
    an exclusive request only needs to know whether a node has any job in the window
    (a count per node), a slot request recounts a node's free units when its jobs
    change."""

    __slots__ = ("need", "count", "is_slot", "excl", "enter", "leave", "ie", "il",
                 "active", "nact", "cap", "static", "total", "d", "busy")

    def __init__(self, graph: ResourceGraph, static: dict, need: tuple, count: int,
                 is_slot: bool, excl: bool, d: float):
        self.need = need
        self.count = count
        self.is_slot = is_slot
        self.excl = excl
        self.d = d
        enter, leave = [], []
        i = 0
        for v in static:
            for jobid, (s, e, masks) in v.mjobs.items():
                enter.append((s, i, v, jobid, masks))
                leave.append((e, i, v, jobid))
                i += 1
        enter.sort(key=_first)
        leave.sort(key=_first)
        self.enter, self.leave = enter, leave
        self.ie = self.il = 0
        self.static = static
        self.cap = dict(static)
        self.total = sum(static.values())
        if excl:
            self.nact = dict.fromkeys(static, 0)
            self.active = None
            self.busy = None
        else:
            self.nact = None
            self.active = {v: {} for v in static}
            self.busy = dict.fromkeys(static, _NOBUSY)

    def seed(self) -> dict:
        """{node: busy masks} over the window of the last ok(t), for the nodes the sweep
        knows exactly (a walk at t starts from it instead of recomputing them)."""
        if self.busy is not None:
            return dict(self.busy)
        return {v: _NOBUSY for v, n in self.nact.items() if not n}

    @classmethod
    def make(cls, graph: ResourceGraph, req: Request, d: float) -> _ShapeSweep | None:
        if len(req.resources) != 1:
            return None
        top = req.resources[0]
        if top.type not in ("slot", "node"):
            return None
        need = graph._need_of(top)
        if not need:
            return None
        excl = top.type == "node" and (top.exclusive or graph.policy.node_exclusive)
        is_slot = top.type == "slot"
        cons = req.constraint
        caps = graph._static_caps(need, is_slot, excl)
        static = {v: c for v, c in caps.items()
                  if not (graph._ndown and graph._eff_down(v)) and (cons is None or cons(v))}
        return cls(graph, static, need, top.lo, is_slot, excl, d)

    def _capacity(self, v: Vertex) -> int:
        busy: dict[str, int] = {}
        for masks in self.active[v].values():
            for ty, m in masks.items():
                busy[ty] = busy.get(ty, 0) | m
        if not busy:
            self.busy[v] = _NOBUSY
            return self.static[v]
        self.busy[v] = busy
        mall = v.mall
        k = _BIG
        for ty, n in self.need:
            m = mall.get(ty)
            a = (m & ~busy.get(ty, 0)).bit_count() if m is not None else v.total.get(ty, 0)
            if a < n:
                return 0
            if a // n < k:
                k = a // n
        return k if self.is_slot else 1

    def ok(self, t: float) -> bool:
        enter, leave = self.enter, self.leave
        ie, il = self.ie, self.il
        ne, nl = len(enter), len(leave)
        end = t + self.d  # a job is in the window if it starts before its end, ends after t
        if self.excl:  # a node counts while no job holds any of it in the window
            nact, static = self.nact, self.static
            total = self.total
            while ie < ne and enter[ie][0] < end:
                v = enter[ie][2]
                n = nact[v]
                if not n:
                    total -= static[v]
                nact[v] = n + 1
                ie += 1
            while il < nl and leave[il][0] <= t:
                v = leave[il][2]
                n = nact[v] - 1
                nact[v] = n
                if not n:
                    total += static[v]
                il += 1
            self.ie, self.il, self.total = ie, il, total
            return total >= self.count
        active = self.active
        dirty = set()
        while ie < ne and enter[ie][0] < end:
            _k, _i, v, jobid, masks = enter[ie]
            active[v][jobid] = masks
            dirty.add(v)
            ie += 1
        while il < nl and leave[il][0] <= t:
            _e, _i, v, jobid = leave[il]
            active[v].pop(jobid, None)
            dirty.add(v)
            il += 1
        self.ie, self.il = ie, il
        cap = self.cap
        for v in dirty:
            c = self._capacity(v)
            self.total += c - cap[v]
            cap[v] = c
        return self.total >= self.count


def _first(x: tuple) -> float:
    return x[0]


_NOBUSY: dict = {}  # shared, never written: no unit of the node is held in the window


def _ranks(ranks: Any) -> set[int]:
    if isinstance(ranks, str):
        try:
            return set(_idset.decode(ranks))
        except ValueError as exc:
            raise ValueError(f"bad rank idset: {exc}") from None
    if isinstance(ranks, int):
        return {ranks}
    out = set()
    for r in ranks:
        if not isinstance(r, int) or r < 0:
            raise ValueError(f"ranks must be non-negative integers, not {r!r}")
        out.add(r)
    return out


def _shape(req: Request) -> str:
    return ", ".join(repr(r) for r in req.resources)


def load_policy(name: str) -> MatchPolicy:
    """A match policy by name from the `flux.match_policy` group (or the custom form)."""
    from flux.core.plugins import load_driver

    opts: dict = {}
    if "=" in name:
        name, opts = parse_custom(name)
    cls = load_driver("flux.match_policy", name)
    try:
        pol = cls(**opts) if isinstance(cls, type) else cls
    except TypeError as exc:
        raise ValueError(f"match policy '{name}': {exc}") from None
    if callable(pol) and not hasattr(pol, "sort_key"):
        pol = pol(**opts)
    return pol
