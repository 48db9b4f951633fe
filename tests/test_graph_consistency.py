"""Random sequences of allocate/reserve/free/drain/undrain/add/remove keep the planners
and the pruning aggregates consistent (hypothesis), and never double-book a core."""

from __future__ import annotations

import pytest
from flux.core.resource.graph import Planner, Request, ResourceGraph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DESC = {
    "cluster": {"rack-size": 2},
    "nodes": [{"hosts": "n[0-4]", "sockets": 2, "cores-per-socket": 3, "gpus-per-socket": 1,
               "memory-per-socket": 8}],
}

requests = st.one_of(
    st.builds(lambda n, c, g: Request.simple(n, c, g), st.integers(1, 6), st.integers(1, 4),
              st.integers(0, 1)),
    st.builds(lambda nn, per, x: Request.simple(nn * per, 1, 0, nn, x), st.integers(1, 3),
              st.integers(1, 3), st.booleans()),
    st.builds(lambda mem: Request.from_jobspec({
        "version": 1, "resources": [{"type": "slot", "count": 1, "label": "task", "with": [
            {"type": "core", "count": 1}, {"type": "memory", "count": mem}]}],
        "tasks": [], "attributes": {"system": {"duration": 0}}}), st.integers(1, 12)),
)

ops = st.lists(st.one_of(
    st.tuples(st.just("alloc"), requests, st.integers(1, 50)),
    st.tuples(st.just("reserve"), requests, st.integers(1, 50)),
    st.tuples(st.just("free"), st.integers(0, 30)),
    st.tuples(st.just("partial"), st.integers(0, 30), st.integers(0, 4)),
    st.tuples(st.just("unreserve_all")),
    st.tuples(st.just("drain"), st.integers(0, 4)),
    st.tuples(st.just("undrain"), st.integers(0, 4)),
    st.tuples(st.just("tick"), st.integers(1, 20)),
    st.tuples(st.just("add")),
    st.tuples(st.just("remove"), st.integers(0, 6)),
), max_size=40)


def _no_double_booking(g: ResourceGraph, now: float) -> None:
    """No core/gpu/memory is held by running jobs beyond its size, and a reservation
    never overlaps an allocation in time on the same unit beyond its size."""
    for v in g.root.leaves():
        if v.plan is not None:
            times = sorted({s for s, _e, _a in v.plan.spans.values()})
            for t in times:
                assert v.plan.avail_at(t) >= 0, (v.path(), t, v.plan.spans)
    # unit leaves (cores, gpus) are tracked per node by masks: count holders per unit
    for node in g.by_rank.values():
        for s, _e, _m in node.mjobs.values():
            for leaf in node.leaves():
                if leaf.bit < 0:
                    continue
                holders = [j for j, (s2, e2, m2) in node.mjobs.items()
                           if s2 <= s < e2 and m2.get(leaf.type, 0) >> leaf.bit & 1]
                assert len(holders) <= 1, (leaf.path(), s, holders)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.sampled_from(["first", "low", "high", "locality", "variation", "firstnodex"]))
def test_random_sequences_stay_consistent(seq, policy):
    g = ResourceGraph.load("yaml", DESC)
    g.set_policy(policy)
    now = 0.0
    jobid = 0
    next_rank = 5
    for op in seq:
        kind = op[0]
        if kind in ("alloc", "reserve"):
            jobid += 1
            fn = g.allocate if kind == "alloc" else g.reserve
            a = fn(op[1], jobid, now, float(op[2]))
            if a is not None:
                assert a.starttime >= now
                if kind == "alloc":
                    assert a.starttime == now and not a.reserved
                    down = set(g.down_ranks())
                    assert not (set(a.ranks()) & down), "allocated on a drained node"
        elif kind == "free":
            if op[1] in g.jobs:
                g.free(op[1])
        elif kind == "partial":
            if op[1] in g.jobs:
                g.free(op[1], ranks=[op[2]])
        elif kind == "unreserve_all":
            g.unreserve_all()
            assert not any(a.reserved for a in g.jobs.values())
        elif kind == "drain":
            if op[1] in g.by_rank:
                g.drain([op[1]])
        elif kind == "undrain":
            if op[1] in g.by_rank:
                g.undrain([op[1]])
        elif kind == "tick":
            now += op[1]
            # jobs past their end are freed, as the job manager would
            for j in [j for j, a in g.jobs.items() if a.end <= now]:
                g.free(j)
        elif kind == "add":
            g.add({"version": 1, "execution": {
                "R_lite": [{"rank": str(next_rank), "children": {"core": "0-3", "gpu": "0"}}],
                "nodelist": [f"x{next_rank}"], "starttime": 0, "expiration": 0}})
            next_rank += 1
        elif kind == "remove":
            if op[1] in g.by_rank and len(g.by_rank) > 1:
                busy = any(op[1] in a.ranks() for a in g.jobs.values() if not a.reserved)
                if busy:
                    with pytest.raises(ValueError, match="hold resources"):
                        g.remove([op[1]])
                else:
                    g.remove([op[1]])
        g.check()
        _no_double_booking(g, now)
    # free everything: the graph is back to whole
    for j in list(g.jobs):
        g.free(j)
    g.check()
    undrained = [r for r in g.by_rank]
    g.undrain(undrained)
    st_ = g.stats()["types"]
    for t, c in st_.items():
        assert c["free"] == c["total"], (t, c)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 30), st.integers(1, 4)),
                max_size=12),
       st.integers(0, 60), st.integers(1, 40), st.integers(1, 8))
def test_planner_avail_time_first_matches_brute_force(spans, after, duration, amount):
    p = Planner(8)
    for s, d, a in spans:
        p.add_span(float(s), float(s + d), a)

    def free_during(t):
        pts = {t} | {s for s, _e, _a in p.spans.values() if t <= s < t + duration}
        return 8 - max(sum(a for s, e, a in p.spans.values() if s <= x < e) for x in pts)

    assert p.avail_during(float(after), float(duration)) == free_during(float(after))
    got = p.avail_time_first(float(after), float(duration), amount)
    cands = sorted({float(after)} | {e for _s, e, _a in p.spans.values() if e > after})
    want = next((t for t in cands if free_during(t) >= amount), None)
    assert got == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 60), st.one_of(st.integers(1, 30), st.none()),
              st.integers(0, 5)),
    st.tuples(st.just("rem"), st.integers(0, 40))), max_size=40),
    st.integers(0, 70), st.integers(1, 40))
def test_planner_points_follow_random_adds_and_removes(ops, t, duration):
    """The kept points (times, usage, references) always equal a rebuild from the spans,
    removed spans leave no points behind, and queries agree with brute force."""
    p = Planner(10)
    live: list[int] = []
    for op in ops:
        if op[0] == "add":
            _k, s, d, a = op
            end = float("inf") if d is None else float(s + d)
            live.append(p.add_span(float(s), end, a))
        elif live:
            p.rem_span(live.pop(op[1] % len(live)))
        assert p.verify() is None

    def used(x):
        return sum(a for s, e, a in p.spans.values() if s <= x < e)

    pts = {float(t)} | {s for s, _e, _a in p.spans.values() if t <= s < t + duration}
    assert p.avail_during(float(t), float(duration)) == 10 - max(used(x) for x in pts)
    assert p.avail_at(float(t)) == 10 - used(float(t))
    for sid in list(p.spans):
        p.rem_span(sid)
    assert p.verify() is None and p.times == [] and p.usage == []
    assert p.avail_during(0.0, 1e9) == 10


def test_planner_never_queried_keeps_bounded_memory():
    """Under allocation-only use (fcfs never asks a planner about the future) the changes
    waiting to be applied stay bounded by the spans held, not by every job ever run."""
    p = Planner(36)
    held = [p.add_span(float(i), float(i + 5), 1) for i in range(4)]
    for i in range(10_000):
        p.rem_span(held.pop(0))
        held.append(p.add_span(float(i + 4), float(i + 9), 1))
        assert len(p._pending) <= max(65, 2 * len(p.spans) + 1)
    assert p.verify() is None and p.avail_at(10_003.0) == 36 - 4  # all four held overlap


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(requests, st.integers(1, 50)), min_size=1, max_size=12),
       st.lists(st.integers(0, 11), max_size=12))
def test_reservations_cancel_back_to_the_same_planners(reqs, cancel):
    """Reserving behind running jobs then canceling the reservations (what every pass
    of a backfill policy does) leaves every planner and mask as before."""
    g = ResourceGraph.load("yaml", DESC)
    jobid = 0
    for req, d in reqs[: len(reqs) // 2]:
        jobid += 1
        g.allocate(req, jobid, 0.0, float(d))

    def snapshot():
        out = {}
        for v in g.root.walk():
            for t, p in (v.plans or {}).items():
                out[(v.uid, t)] = tuple(map(list, p.steps()))
            if v.plan is not None and v.plan.spans:  # (created on first use)
                out[(v.uid, "")] = tuple(map(list, v.plan.steps()))
            if v.mjobs is not None:
                out[(v.uid, "masks")] = dict(v.mjobs)
        return out

    before = snapshot()
    held = []
    for req, d in reqs[len(reqs) // 2:]:
        jobid += 1
        if g.reserve(req, jobid, 0.0, float(d)) is not None:
            held.append(jobid)
    g.check()
    order = [held[i % len(held)] for i in cancel] if held else []
    for j in dict.fromkeys(order + held):
        g.unreserve(j)
        g.check()
    assert snapshot() == before
