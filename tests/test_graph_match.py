"""The resource graph and its matcher: readers, allocate/reserve/free, R output."""

from __future__ import annotations

import math

import pytest
from flux.core.resource.graph import MatchError, Request, ResourceGraph
from flux.core.resource.rv1 import ResourceSet

DESC = {
    "cluster": {"name": "tiny", "rack-size": 2},
    "nodes": [
        {"hosts": "n[0-1]", "sockets": 2, "cores-per-socket": 4, "gpus-per-socket": 1,
         "memory-per-socket": 16, "properties": ["batch"], "perf-class": 1},
        {"hosts": "n[2-3]", "sockets": 2, "cores-per-socket": 4,
         "memory-per-socket": 16, "properties": ["debug"], "perf-class": 2},
    ],
}


def graph(policy: str = "first") -> ResourceGraph:
    g = ResourceGraph.load("yaml", DESC)
    g.set_policy(policy)
    return g


def jobspec(resources: list, duration: float = 0.0, constraints: dict | None = None) -> dict:
    system: dict = {"duration": duration}
    if constraints is not None:
        system["constraints"] = constraints
    return {"version": 1, "resources": resources,
            "tasks": [{"command": ["true"], "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": system}}


def slot(n: int, cores: int = 1, gpus: int = 0, **kw) -> dict:
    w = [{"type": "core", "count": cores}]
    if gpus:
        w.append({"type": "gpu", "count": gpus})
    return {"type": "slot", "count": n, "label": "task", "with": w, **kw}


def R_of(alloc) -> ResourceSet:
    return ResourceSet.from_dict(alloc.to_rv1())


def test_description_builds_the_modeled_cluster():
    g = graph()
    st = g.stats()["types"]
    assert st["node"]["total"] == 4 and st["rack"]["total"] == 2
    assert st["core"]["total"] == 32 and st["gpu"]["total"] == 4
    assert st["memory"]["total"] == 128 and st["socket"]["total"] == 8
    assert g.by_rank[3].name == "n3" and g.by_rank[3].properties["perf_class"] == "2"
    g.check()


def test_single_core_jobs_fill_node_by_node_and_free_returns_everything():
    g = graph()
    req = Request.from_jobspec(jobspec([slot(1)]))
    allocs = [g.allocate(req, j, 0.0, 60) for j in range(1, 33)]
    assert all(a is not None for a in allocs)
    assert [a.ranks() for a in allocs[:9]] == [[0]] * 8 + [[1]]
    assert g.allocate(req, 99, 0.0, 60) is None
    assert g.stats()["types"]["core"]["free"] == 0
    g.check()
    for j in range(1, 33):
        g.free(j)
    g.check()
    assert g.stats()["types"]["core"]["free"] == 32
    assert g.stats()["types"]["node"]["free"] == 4


def test_node_slot_core_gpu_shape_and_rv1():
    g = graph()
    js = jobspec([{"type": "node", "count": 2, "with": [slot(2, cores=2, gpus=1)]}], 600)
    a = g.allocate(Request.from_jobspec(js), 7, 1000.0)
    assert a is not None and a.expiration == 1600.0 and a.nslots == 4
    R = a.to_rv1()
    rs = ResourceSet.from_dict(R)
    assert sorted(rs.ranks) == [0, 1]
    assert all(len(rk.cores) == 4 and len(rk.gpus) == 2 for rk in rs.ranks.values())
    assert R["execution"]["nodelist"] == ["n[0-1]"]
    assert R["execution"]["starttime"] == 1000.0 and R["execution"]["expiration"] == 1600.0
    assert R["scheduling"]["writer"] == "fluxion:jgf"
    types = sorted(n["metadata"]["type"] for n in R["scheduling"]["graph"]["nodes"])
    assert types.count("core") == 8 and types.count("node") == 2 and "cluster" in types


def test_exclusive_node_gets_whole_node_and_blocks_sharing():
    g = graph()
    a = g.allocate(Request.simple(1, 1, nnodes=1, exclusive=True), 1, 0.0, 10)
    assert a is not None and a.ncores == 8 and a.ngpus == 2 and a.count("memory") == 32
    b = g.allocate(Request.simple(1, 1), 2, 0.0, 10)
    assert b.ranks() == [1]  # node 0 is held whole
    g.check()


def test_cpu_and_gpu_jobs_share_a_node():
    g = graph()
    gpu = g.allocate(Request.simple(1, cores=1, gpus=2), 1, 0.0, 10)
    cpu = [g.allocate(Request.simple(1, 1), j, 0.0, 10) for j in range(2, 9)]
    assert gpu.ranks() == [0] and gpu.ngpus == 2
    assert all(c.ranks() == [0] for c in cpu)  # the other 7 cores of node 0
    g.check()


def test_reserve_finds_earliest_time_and_allocate_respects_it():
    g = graph()
    big = Request.simple(4, 1, nnodes=4, exclusive=True)
    first = g.allocate(Request.simple(1, 1), 1, 0.0, 100)
    assert first is not None
    assert g.allocate(big, 2, 0.0, 50) is None
    r = g.reserve(big, 2, 0.0, 50)
    assert r is not None and r.reserved and r.starttime == 100.0 and r.expiration == 150.0
    # a backfill job that would run into the reservation cannot start now ...
    assert g.allocate(Request.simple(1, 1), 3, 10.0, 200) is None
    # ... one that ends before it can
    assert g.allocate(Request.simple(1, 1), 4, 10.0, 80) is not None
    g.check()
    g.unreserve_all()
    assert 2 not in g.jobs
    assert g.allocate(Request.simple(1, 1), 3, 10.0, 200) is not None
    g.check()


def test_reserve_never_returns_none_for_too_big():
    g = graph()
    assert g.reserve(Request.simple(5, 1, nnodes=5), 1, 0.0, 10) is None


def test_satisfiable_reasons():
    g = graph()
    ok, why = g.satisfiable(Request.simple(33, 1))
    assert not ok and "33 cores" in why and "32" in why
    ok, why = g.satisfiable(Request.simple(1, cores=9))
    assert not ok and "shape" in why
    assert g.satisfiable(Request.simple(1, cores=8)) == (True, "")
    g.drain("0-3")
    assert g.satisfiable(Request.simple(32, 1))[0]  # drained nodes may come back
    ok, why = g.satisfiable(jobspec([slot(1)], constraints={"properties": ["nosuch"]}))
    assert not ok and "constraints" in why


def test_satisfiable_counts_drained_resources():
    g = graph()
    whole = Request.from_jobspec(jobspec([{"type": "node", "count": 4, "exclusive": True,
                                           "with": [slot(8)]}]))
    gpu_pair = Request.simple(2, 1, 1, 2)
    named = Request.from_jobspec(jobspec([slot(1)], constraints={"hostlist": ["n3"]}))
    g.drain([0, 1, 2, 3])
    sock = next(v for v in g.by_rank[1].kids if v.type == "socket")
    g.set_down(sock, True)  # a drained vertex below a drained node
    for req in (whole, gpu_pair, named):
        assert g.satisfiable(req) == (True, ""), req
    ok, why = g.satisfiable(Request.simple(5, 1, 0, 5))
    assert not ok and "requested 5 nodes" in why
    ok, why = g.satisfiable(Request.simple(1, 1, 3))
    assert not ok and "gpu" in why
    # and nothing can start or be reserved while they are drained
    assert g.allocate(whole, 1, 0.0, 10) is None
    assert g.reserve(whole, 1, 0.0, 10) is None
    g.undrain([0, 1, 2, 3])
    g.set_down(sock, False)
    assert g.allocate(whole, 1, 0.0, 10).nnodes == 4
    g.check()


def test_constraints_properties_hostlist_ranks():
    g = graph()
    a = g.allocate(Request.from_jobspec(jobspec([slot(1)], constraints={"properties": ["debug"]})),
                   1, 0.0, 10)
    assert a.ranks() == [2]
    b = g.allocate(Request.from_jobspec(jobspec([slot(1)], constraints={"hostlist": ["n3"]})),
                   2, 0.0, 10)
    assert b.ranks() == [3]
    c = g.allocate(Request.from_jobspec(jobspec(
        [slot(1)], constraints={"and": [{"not": [{"ranks": ["0-1"]}]},
                                        {"properties": ["^debug"]}]})), 3, 0.0, 10)
    assert c is None
    d = g.allocate(Request.from_jobspec(jobspec(
        [slot(1)], constraints={"or": [{"ranks": ["1"]}, {"properties": ["nosuch"]}]})), 4, 0, 10)
    assert d.ranks() == [1]


def test_drain_undrain_and_running_jobs():
    g = graph()
    a = g.allocate(Request.simple(1, 1), 1, 0.0, 10)
    g.drain([0])
    g.check()
    assert g.down_ranks() == [0]
    b = g.allocate(Request.simple(1, 1), 2, 0.0, 10)
    assert b.ranks() == [1]
    assert g.stats()["types"]["core"]["free"] == 32 - 8 - 1
    g.free(a.jobid)  # a job on a drained node ends: its core stays out of use
    g.check()
    assert g.stats()["types"]["core"]["free"] == 32 - 8 - 1
    g.undrain("0")
    g.check()
    assert g.stats()["types"]["core"]["free"] == 31


def test_remove_refused_while_allocated_then_allowed():
    g = graph()
    g.allocate(Request.simple(1, 1), 1, 0.0, 10)
    with pytest.raises(ValueError, match=r"job\(s\) 1 hold"):
        g.remove("0")
    g.check()
    g.free(1)
    g.remove("0")
    g.check()
    assert g.ranks() == [1, 2, 3] and g.stats()["types"]["core"]["total"] == 24


def test_add_subgraph_from_R():
    g = graph()
    R = {"version": 1, "execution": {"R_lite": [{"rank": "4-5", "children": {"core": "0-3"}}],
                                     "nodelist": ["x[4-5]"], "starttime": 0, "expiration": 0}}
    assert g.add(R) == [4, 5]
    g.check()
    assert g.stats()["types"]["core"]["total"] == 40
    a = g.allocate(Request.simple(1, 1, nnodes=1), 1, 0.0, 10,)
    assert a is not None
    with pytest.raises(ValueError, match="already"):
        g.add(R)
    a = g.allocate(Request.from_jobspec(jobspec([slot(1)], constraints={"hostlist": ["x5"]})),
                   2, 0.0, 10)
    assert a.ranks() == [5]
    g.check()


def test_rv1_roundtrip_rebuilds_exact_subgraph():
    g = graph()
    a = g.allocate(Request.from_jobspec(jobspec([{"type": "node", "count": 1, "with": [
        {"type": "socket", "count": 1, "with": [slot(1, cores=2), {"type": "memory", "count": 4}]}]}])),
        1, 0.0, 0)
    assert a is not None and a.expiration == 0.0
    child = ResourceGraph.from_rv1(a.to_rv1())
    st = child.stats()["types"]
    assert st["core"]["total"] == 2 and st["socket"]["total"] == 1 and st["memory"]["total"] == 4
    # without the JGF only nodes, cores and gpus remain
    plain = ResourceGraph.from_rv1(a.to_rv1(scheduling=False))
    assert set(plain.stats()["types"]) == {"cluster", "node", "core"}
    # whole-graph round trip through JGF
    again = ResourceGraph.load("jgf", g.to_jgf())
    assert again.stats()["types"] == ResourceGraph.load("yaml", DESC).stats()["types"]


def test_ranges_take_as_many_as_allowed():
    g = graph()
    js = jobspec([{"type": "slot", "count": {"min": 2, "max": 100, "operator": "+", "operand": 2},
                   "label": "task", "with": [{"type": "core", "count": 3}]}])
    a = g.allocate(Request.from_jobspec(js), 1, 0.0, 10)
    # 8 cores per node -> 2 slots of 3 per node, 8 in all, an even count
    assert a.nslots == 8 and a.ncores == 24
    g.check()


def test_policies_order():
    for name, rank in (("first", 0), ("low", 0), ("high", 3)):
        g = graph(name)
        assert g.allocate(Request.simple(1, 1), 1, 0.0, 10).ranks() == [rank], name
    g = graph("high")
    a = g.allocate(Request.simple(1, 1), 1, 0.0, 10)
    assert R_of(a).ranks[3].cores == {7}


def test_locality_packs_small_jobs_into_busy_subtrees():
    g = graph("locality")
    a = g.allocate(Request.simple(1, 1, nnodes=1), 1, 0.0, 10)
    # a second small job goes next to the first, not to an idle node
    b = g.allocate(Request.simple(1, 1), 2, 0.0, 10)
    assert a.ranks() == b.ranks()
    # a whole-rack job goes to the idle rack
    c = g.allocate(Request.simple(2, 8, nnodes=2), 3, 0.0, 10)
    assert c.ranks() == [2, 3]


def test_variation_keeps_jobs_in_one_perf_class():
    g = graph("variation")
    # occupy one core of node 1 (class 1): a 2-node whole-node job cannot stay in class 1
    g.allocate(Request.from_jobspec(jobspec([slot(1)], constraints={"ranks": ["1"]})), 1, 0, 10)
    a = g.allocate(Request.simple(2, 8, nnodes=2), 2, 0.0, 10)
    assert a.ranks() == [2, 3]
    g2 = graph("first")
    g2.allocate(Request.from_jobspec(jobspec([slot(1)], constraints={"ranks": ["1"]})), 1, 0, 10)
    # first takes node 0 (class 1) and node 2 (class 2): a mix variation avoids
    assert g2.allocate(Request.simple(2, 8, nnodes=2), 2, 0.0, 10).ranks() == [0, 2]
    # with 3 nodes there must be a mix: still the smallest spread
    g3 = graph("variation")
    b = g3.allocate(Request.simple(3, 8, nnodes=3), 1, 0.0, 10)
    assert b.nnodes == 3


def test_firstnodex_and_custom_policy_give_whole_nodes():
    for pol in ("firstnodex", "policy=low node_exclusive=true"):
        g = graph(pol)
        a = g.allocate(Request.simple(1, 1), 1, 0.0, 10)
        assert a.ncores == 8, pol
        g.check()


def test_unknown_policy_lists_installed():
    g = graph()
    with pytest.raises(LookupError) as ei:
        g.set_policy("frist")
    msg = str(ei.value)
    assert "frist" in msg and "first" in msg and "locality" in msg and "variation" in msg


def test_duplicate_jobid_and_unknown_free():
    g = graph()
    g.allocate(Request.simple(1, 1), 1, 0.0, 10)
    with pytest.raises(MatchError, match="already holds"):
        g.allocate(Request.simple(1, 1), 1, 0.0, 10)
    with pytest.raises(MatchError, match="holds no resources"):
        g.free(42)


def test_partial_free_by_rank():
    g = graph()
    a = g.allocate(Request.simple(2, 8, nnodes=2), 1, 0.0, 10)
    assert a.ranks() == [0, 1]
    g.free(1, ranks=[0])
    g.check()
    assert g.jobs[1].ranks() == [1]
    assert g.stats()["types"]["core"]["free"] == 24
    g.free(1, ranks="1")
    assert 1 not in g.jobs
    g.check()


def test_claim_restores_running_job():
    g = graph()
    a = g.allocate(Request.simple(2, 2, nnodes=2), 1, 5.0, 100)
    R = a.to_rv1(False)
    g2 = graph()
    c = g2.claim(1, R)
    assert c.ranks() == [0, 1] and c.ncores == 4 and c.starttime == 5.0 and c.end == 105.0
    g2.check()
    with pytest.raises(ValueError, match="already allocated"):
        g2.claim(2, R)
    g2.check()


def test_unlimited_duration_uses_graph_expiration():
    R = {"version": 1, "execution": {"R_lite": [{"rank": "0", "children": {"core": "0-1"}}],
                                     "starttime": 100.0, "expiration": 500.0}}
    g = ResourceGraph.from_rv1(R)
    a = g.allocate(Request.simple(1, 1), 1, 200.0, 0)
    assert a.expiration == 500.0 and math.isinf(a.end)


@pytest.mark.parametrize("bad, msg", [
    ({"resources": []}, "non-empty"),
    ({"resources": [{"type": "node", "count": 1}]}, "slot"),
    ({"resources": [{"type": "slot", "count": 1, "label": "t"}]}, "must contain"),
    ({"resources": [{"type": "slot", "count": -1, "with": [{"type": "core", "count": 1}]}]}, ">= 0"),
    ({"resources": [{"type": "slot", "count": {"max": 2}, "with": [{"type": "core", "count": 1}]}]}, "min"),
    ({"resources": [{"type": "slot", "count": 1, "with": [{"type": "core", "count": 1}]}],
      "attributes": {"system": {"constraints": {"bogus": []}}}}, "unknown constraint operator"),
    ({"resources": [{"type": "slot", "count": 1, "with": [{"type": "core", "count": 1}]}],
      "attributes": {"system": {"duration": "x"}}}, "duration"),
])
def test_malformed_jobspec_names_problem(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Request.from_jobspec(bad)


def test_properties_change_at_run_time():
    g = graph()
    req = Request.from_jobspec(jobspec([slot(1)], constraints={"properties": ["gold"]}))
    assert not g.satisfiable(req)[0]
    g.set_property("2-3", "gold")
    assert g.satisfiable(req)[0]
    assert g.allocate(req, 1, 0.0, 10).ranks() == [2]
    g.remove_property([2], "gold")
    assert g.allocate(req, 2, 0.0, 10).ranks() == [3]
    assert g.to_rv1()["execution"]["properties"]["gold"] == "3"
    with pytest.raises(ValueError, match="invalid property"):
        g.set_property([0], "a|b")
