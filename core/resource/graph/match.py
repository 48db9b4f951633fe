"""The matcher: a pruned depth-first walk of the containment tree that finds what a
request asks for.

Three modes share one walk:
- NOW: can the request start now and hold for `duration`? Pruning reads the live
  `free` aggregates, and resources are taken as the walk goes (aggregates updated in
  place), so the aggregates stay exact while one request places many slots; a dead end
  rolls back to a mark in the log.
- FUTURE: would it fit over [t, t+duration)? (reservations) Leaves are checked against
  their planners; node vertices prune with their per-type planners.
- SAT: could it ever fit, ignoring use and status? (submit-time satisfiability)

Every match takes the first fit in the policy's order (see policy.py).
"""

from __future__ import annotations

import math

from flux.core.resource.graph.request import ReqNode

NOW, FUTURE, SAT = 0, 1, 2
_BIG = 1 << 62


def count_idle(v, d: int) -> None:
    """v turned idle (d=1) or busy (d=-1): it and its ancestors count d more free `v.type`."""
    vt = v.type
    while v is not None:
        v.free[vt] += d
        v = v.parent


def _take(leaf, amt: int) -> None:
    """Allocate `amt` of a pool vertex whose whole path is up: update the aggregates."""
    t = leaf.type
    leaf.used += amt
    v = leaf.parent
    while v is not None:
        v.free[t] -= amt
        if not v.used:  # idle -> busy: v no longer counts as a free `v.type`
            count_idle(v, -1)
        v.used += amt
        v = v.parent


def _untake(leaf, amt: int) -> None:
    t = leaf.type
    leaf.used -= amt
    v = leaf.parent
    while v is not None:
        v.free[t] += amt
        v.used -= amt
        if not v.used:  # busy -> idle
            count_idle(v, 1)
        v = v.parent


class Walk:
    __slots__ = ("graph", "mode", "t", "d", "log", "taken", "prune", "spans_matter",
                 "node_filter", "policy", "dynamic", "node_excl", "linked", "contained",
                 "gen", "track", "cursor", "ucache", "ntaken", "bcache", "wholes", "part",
                 "whole_nodes")

    def __init__(self, graph, mode: int, t: float, duration: float, node_filter=None):
        self.graph = graph
        self.mode = mode
        self.t = t
        self.d = duration
        self.log: list = []  # (vertex, amount taken); amount 0 marks an exclusive vertex
        self.taken: dict = {}
        self.prune = graph.prune
        self.spans_matter = mode == NOW and graph._nresv > 0
        self.track = mode != NOW or self.spans_matter  # keep `taken` per leaf
        self.node_filter = node_filter
        self.policy = graph.policy
        self.dynamic = graph.policy.dynamic
        self.node_excl = graph.policy.node_exclusive
        self.linked = graph._linked_types
        self.contained = graph._contained_types
        self.gen = graph._gen
        self.cursor: dict = {}  # (vertex, type) -> children before this index are used up
        self.ucache: dict = {}  # FUTURE: node -> its unit leaves free over the window
        self.ntaken: dict = {}  # FUTURE: (node, type) -> units taken there by this walk
        self.bcache: dict = {}  # node -> {type: mask of unit leaves held over the window}
        self.wholes: set = set()  # FUTURE: nodes this walk took whole
        self.part: dict = {}  # units(): leaves taken one by one
        self.whole_nodes: list = []  # units(): nodes taken whole

    # ------------------------------------------------------------ bookkeeping
    def need(self, req: ReqNode) -> tuple:
        n = req._need
        if n is None or n[0] != self.gen:
            n = (self.gen, self.graph._need_of(req))
            req._need = n
        return n[1]

    def take(self, leaf, amt: int) -> None:
        if self.mode == NOW:
            _take(leaf, amt)
        elif leaf.bit >= 0 and self.mode == FUTURE:
            k = (leaf.node, leaf.type)
            self.ntaken[k] = self.ntaken.get(k, 0) + amt
        if self.track:
            self.taken[leaf] = self.taken.get(leaf, 0) + amt
        self.log.append((leaf, amt))

    def rollback(self, mark: int) -> None:
        if self.cursor:
            self.cursor = {}
        log = self.log
        now = self.mode == NOW
        while len(log) > mark:
            leaf, amt = log.pop()
            if amt is _WHOLE:
                self._untake_whole(leaf)
                continue
            if amt and leaf is not _SLOT:
                if leaf.__class__ is _Linked:
                    leaf = leaf.v
                    if now:
                        self.graph._apply(leaf, -amt)
                    if self.track:
                        self.taken[leaf] -= amt
                    continue
                if now:
                    _untake(leaf, amt)
                elif leaf.bit >= 0 and self.mode == FUTURE:
                    self.ntaken[(leaf.node, leaf.type)] -= amt
                if self.track:
                    self.taken[leaf] -= amt

    def abort(self) -> None:
        self.rollback(0)

    # ------------------------------------------------------------- predicates
    def busy(self, node) -> dict:
        """{type: mask} of `node`'s unit leaves that committed jobs hold during the window."""
        b = self.bcache.get(node)
        if b is None:
            b = self.bcache[node] = self.graph.busy_masks(node, self.t, self.t + self.d)
        return b

    def leaf_avail(self, u) -> int:
        mode = self.mode
        if mode == NOW:
            a = u.size - u.used
            if self.spans_matter and a > 0:
                if u.bit >= 0:  # unit leaf: its node's masks say who holds it when
                    if self.busy(u.node).get(u.type, 0) >> u.bit & 1:
                        return 0
                elif u.plan is not None and u.plan.spans:
                    a = min(a, u.plan.avail_during(self.t, self.d) - self.taken.get(u, 0))
            return a
        taken = self.taken.get(u, 0)
        a = u.size - taken
        if mode == FUTURE and a > 0:
            if u.bit >= 0:
                node = u.node
                if self.wholes and node in self.wholes:
                    return 0
                if self.busy(node).get(u.type, 0) >> u.bit & 1:
                    return 0
                return a
            p = u.plan
            if p is not None and p.spans:
                a = min(a, p.avail_during(self.t, self.d) - taken)
        return a

    def fits(self, u, need: tuple) -> bool:
        mode = self.mode
        if mode == NOW:
            f = u.free
            for t, n in need:
                if f.get(t, 0) < n:
                    return False
            return True
        tot = u.total
        plans = u.plans if mode == FUTURE else None
        if plans is not None and u.mall is not None:
            # a node: exact counts of its unit leaves free over the window
            us = self.ucache.get(u)
            if us is None:
                us = self.ucache[u] = self.graph.usable(u, self.t, self.t + self.d, self.busy(u))
            nt = self.ntaken
            for t, n in need:
                if t in us:
                    if us[t] - nt.get((u, t), 0) < n:
                        return False
                elif t in plans:
                    if plans[t].avail_during(self.t, self.d) < n:
                        return False
                elif tot.get(t, 0) < n:
                    return False
            return True
        for t, n in need:
            if plans is not None and t in plans:
                if plans[t].avail_during(self.t, self.d) < n:
                    return False
            elif tot.get(t, 0) < n:
                return False
        return True

    def enough(self, v, c: ReqNode, lo: int) -> bool:
        """Could v's subtree hold `lo` of c at all? Its aggregates (free now, or its
        planners over the window) bound what the walk below it can find."""
        need = self.need(c)
        if not need:
            return True
        mode = self.mode
        if mode == NOW:
            f = v.free
            if f is None:
                return True
            for t, n in need:
                if f.get(t, 0) < n * lo:
                    return False
            return True
        plans = v.plans if mode == FUTURE else None
        tot = v.total
        for t, n in need:
            if plans is not None and t in plans:
                if plans[t].avail_during(self.t, self.d) < n * lo:
                    return False
            elif tot.get(t, 0) < n * lo:
                return False
        return True

    def idle(self, u) -> bool:
        """Nothing under u is in use over the window (so u can be had exclusively)."""
        mode = self.mode
        if mode == NOW:
            if u.used:
                return False
            if not self.spans_matter:
                return True
        taken = self.taken
        if mode != SAT and u.mall is not None:
            # a node: its masks cover the unit leaves, only pools need their planners
            for m in self.busy(u).values():
                if m:
                    return False
            if mode == FUTURE:
                nt = self.ntaken
                for ty in u.mall:
                    if nt.get((u, ty)):
                        return False
            for leaf in self.graph.pool_leaves(u):
                if taken.get(leaf) or (leaf.plan is not None and leaf.plan.spans
                                       and leaf.plan.avail_during(self.t, self.d) < leaf.size):
                    return False
            return True
        for leaf in u.leaves():
            if taken.get(leaf):
                return False
            if mode == SAT:
                continue
            if leaf.bit >= 0:
                if u.mall is None and self.busy(leaf.node).get(leaf.type, 0) >> leaf.bit & 1:
                    return False
            elif leaf.plan is not None and leaf.plan.spans \
                    and leaf.plan.avail_during(self.t, self.d) < leaf.size:
                return False
        return True

    def take_whole(self, u) -> None:
        """u (a node) is idle over the window and nothing under it is drained: take all
        of it at once (aggregates in bulk, one log entry)."""
        g = self.graph
        mode = self.mode
        if mode == NOW:
            g._take_whole(u)
        else:
            nt = self.ntaken
            for ty, n in g.whole_counts(u).items():
                nt[(u, ty)] = nt.get((u, ty), 0) + n
            self.wholes.add(u)
        if self.track:
            taken = self.taken
            for leaf in g.pool_leaves(u):
                taken[leaf] = taken.get(leaf, 0) + leaf.size
        self.log.append((u, _WHOLE))

    def _untake_whole(self, u) -> None:
        g = self.graph
        if self.mode == NOW:
            g._untake_whole(u)
        else:
            nt = self.ntaken
            for ty, n in g.whole_counts(u).items():
                nt[(u, ty)] -= n
            self.wholes.discard(u)
        if self.track:
            taken = self.taken
            for leaf in g.pool_leaves(u):
                taken[leaf] -= leaf.size

    def take_all(self, u) -> None:
        for leaf in u.leaves():
            a = self.leaf_avail(leaf)
            if a > 0:
                self.take(leaf, a)
        self.log.append((u, 0))

    def node_ok(self, u) -> bool:
        f = self.node_filter
        return f is None or f(u)

    # ------------------------------------------------------------------ walk
    def match(self, request) -> bool:
        top = self.graph._top()
        for req in request.resources:
            if not self.satisfy(top, req):
                self.abort()
                return False
        return True

    def satisfy(self, v, c: ReqNode) -> bool:
        """Place c's count below v; on failure nothing stays taken."""
        mark = len(self.log)
        lo, hi = c.lo, c.hi
        if lo > 1 and self.prune and not self.enough(v, c, lo):
            return False
        if hi == lo:
            if lo == 0:
                return True
            if self.collect(v, c, lo) >= lo:
                return True
            self.rollback(mark)
            return False
        n = self.collect(v, c, _BIG if hi is None else hi)
        b = c.best(n)
        if b is None:
            self.rollback(mark)
            return False
        if b != n:
            self.rollback(mark)
            if b and self.collect(v, c, b) != b:
                self.rollback(mark)
                return False
        return True

    def collect(self, v, req: ReqNode, want: int) -> int:
        """Take up to `want` instances (or units, for pools) of req below v, in policy order."""
        T = req.type
        if T == "slot" and v.node is not None:
            return self.slots(v, req, want)
        kids = v.kids
        dynamic = self.dynamic
        if dynamic:
            kids = self.policy.order(self, v, kids, req, want)
            start = 0
        else:
            # children known to be used up for T earlier in this walk are skipped
            cursor = self.cursor
            key = (v, T)
            start = cursor.get(key, 0)
            if start:
                kids = kids[start:]
        lead = start
        i = start - 1
        need = self.need(req) if self.prune else ()
        contained = T in self.contained
        node_filter = self.node_filter
        skip_down = self.mode != SAT
        found = 0
        for u in kids:
            i += 1
            if u.down and skip_down:
                if lead == i:
                    lead += 1
                continue
            ut = u.type
            if ut == T:
                if not u.kids:
                    a = self.leaf_avail(u)
                    if a <= 0:
                        if lead == i:
                            lead += 1
                        continue
                    rest = want - found
                    if a <= rest:
                        self.take(u, a)
                        found += a
                        if lead == i:
                            lead += 1
                    else:
                        self.take(u, rest)
                        found += rest
                else:
                    if need and not self.fits(u, need):
                        continue
                    if ut == "node" and node_filter is not None and not node_filter(u):
                        continue
                    mark = len(self.log)
                    if self.place(u, req):
                        found += 1
                    else:
                        self.rollback(mark)
            elif u.kids:
                if contained and T not in u.total:
                    continue
                if need and not self.fits(u, need):
                    continue
                if ut == "node":
                    if node_filter is not None and not node_filter(u):
                        continue
                    if T == "slot" and self.node_excl:
                        found += self._slots_exclusive(u, req, want - found)
                        if found >= want:
                            break
                        continue
                found += self.collect(u, req, want - found)
            else:
                if lead == i:
                    lead += 1
                continue
            if found >= want:
                break
        if lead > start and not dynamic:
            self.cursor[key] = lead
        if found < want and v.links and T in self.linked:
            found += self._collect_linked(v, req, want - found)
        return found

    def _collect_linked(self, v, req: ReqNode, want: int) -> int:
        """Pools reachable from v over another subsystem (e.g. storage near a node)."""
        found = 0
        for u in v.links:
            if u.type != req.type or u.kids or (self.mode != SAT and self.graph._eff_down(u)):
                continue
            a = self.leaf_avail(u)
            if a <= 0:
                continue
            n = min(a, want - found)
            if self.mode == NOW:
                # the pool's own path may be partly drained: use the careful update
                self.graph._apply(u, n)
                if self.track:
                    self.taken[u] = self.taken.get(u, 0) + n
                self.log.append((_Linked(u), n))
            else:
                self.take(u, n)
            found += n
            if found >= want:
                break
        return found

    def _slots_exclusive(self, node, req: ReqNode, want: int) -> int:
        if not self.idle(node):
            return 0
        mark = len(self.log)
        n = self.slots(node, req, want)
        if n == 0:
            self.rollback(mark)
            return 0
        self.take_all(node)
        return n

    def place(self, u, req: ReqNode) -> bool:
        """u is of req's type: fit req's children inside it."""
        excl = req.exclusive or (self.node_excl and u.type == "node")
        if excl and not self.idle(u):
            return False
        if excl and u.mall is not None and self.mode != SAT:
            k = self.graph._whole_fit(u, req)
            if k is not None:  # an idle node: the job takes all of it, k slots in it
                if k < 0:
                    return False
                self.take_whole(u)
                if k:
                    self.log.extend([(_SLOT, 1)] * k)
                return True
        for c in req.children:
            if not self.satisfy(u, c):
                return False
        if excl:
            self.take_all(u)
        return True

    def slots(self, v, req: ReqNode, want: int) -> int:
        need = self.need(req) if self.prune else ()
        n = 0
        log = self.log
        if want > 1:
            n = self._slots_batch(v, req, want)
        while n < want:
            if need and not self.fits(v, need):
                break
            mark = len(log)
            for c in req.children:
                if not self.satisfy(v, c):
                    self.rollback(mark)
                    return n
            n += 1
            log.append((_SLOT, 1))
        return n

    def _slots_batch(self, v, req: ReqNode, want: int) -> int:
        """Place k slots at once when each slot is a fixed count of leaf resources:
        taking k*c units in policy order takes the same units as k slots one by one."""
        kids = req._batch
        if kids is None or kids[0] != self.gen:
            leafy = self.graph._leaf_types
            ok = all(c.type in leafy and c.lo == c.hi and not c.children for c in req.children)
            kids = (self.gen, tuple((c, c.type, c.lo) for c in req.children) if ok else None)
            req._batch = kids
        kids = kids[1]
        if kids is None:
            return 0
        k = want
        mode = self.mode
        if mode == NOW:
            f = v.free
            for _c, ty, cnt in kids:
                if cnt:
                    k = min(k, f.get(ty, 0) // cnt)
        elif mode == FUTURE and v.mall is not None:
            us = self.ucache.get(v)
            if us is None:
                us = self.ucache[v] = self.graph.usable(v, self.t, self.t + self.d, self.busy(v))
            for _c, ty, cnt in kids:
                if cnt and ty in us:
                    k = min(k, (us[ty] - self.ntaken.get((v, ty), 0)) // cnt)
        while k > 1:  # each retry lowers k to what the first short child type allowed
            mark = len(self.log)
            for c, _ty, cnt in kids:
                m = cnt * k
                got = self.collect(v, c, m) if m else 0
                if got < m:
                    self.rollback(mark)
                    k = got // cnt
                    break
            else:
                self.log.extend([(_SLOT, 1)] * k)
                return k
        return 0

    # ---------------------------------------------------------------- result
    def units(self) -> tuple[dict, list, int]:
        """{leaf: amount}, the exclusively held vertices, and the number of slots."""
        units: dict = {}
        excl = []
        nslots = 0
        wholes = []
        for u, a in self.log:
            if u is _SLOT:
                nslots += 1
            elif a is _WHOLE:
                wholes.append(u)
                excl.append(u)
            elif a:
                if isinstance(u, _Linked):
                    u = u.v
                units[u] = units.get(u, 0) + a
            else:
                excl.append(u)
        self.part = units  # what was taken leaf by leaf (the rest: whole nodes)
        self.whole_nodes = wholes
        if wholes:
            units = dict(units)
            whole = self.graph.whole_units
            for u in wholes:
                units.update(whole(u))
        return units, excl, nslots


_SLOT = object()  # log marker: one slot placed
_WHOLE = object()  # log amount: the vertex (an idle node) was taken whole


class _Linked:
    """Log entry for a pool taken through another subsystem: rolled back with _apply."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v


def window(now: float, duration: float) -> tuple[float, float]:
    """Planner window for a duration (0 or inf: unlimited)."""
    if not duration or duration <= 0 or math.isinf(duration):
        return now, math.inf
    return now, duration
