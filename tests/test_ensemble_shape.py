"""Unit checks of ensemble shapes, config and placement policies (no instance)."""

from __future__ import annotations

import pytest
from flux_ensemble import policy
from flux_ensemble.children import ranks_of, rerank
from flux_ensemble.config import ConfigError, from_conf
from flux_ensemble.shape import ChildSpec, ShapeError, count_instances, parse, split


def test_parse_forms():
    assert parse("2x4") == ("2", "4")
    assert parse("node,core") == ("node", "core")
    assert parse(["node", 4]) == ("node", "4")
    assert parse("") == ()
    for bad in ("0", "2y", "node,-1", "x"):
        with pytest.raises(ShapeError):
            parse(bad)


def test_split_nodes_and_cores():
    assert split("node", 32, 36) == [ChildSpec(1, 36, True)] * 32
    assert split("4", 32, 36) == [ChildSpec(8, 36, True)] * 4
    assert split("core", 1, 36) == [ChildSpec(1, 1, False)] * 36
    assert split("64", 32, 36) == [ChildSpec(1, 18, False)] * 64
    with pytest.raises(ShapeError, match="cannot split 32 nodes into 3"):
        split("3", 32, 36)
    with pytest.raises(ShapeError, match="not a multiple"):
        split("48", 32, 36)
    with pytest.raises(ShapeError, match="at least one core"):
        split("8", 1, 4)
    assert count_instances(("node", "core"), 32, 36) == [32, 1152]
    assert count_instances(("node", "2"), 32, 36) == [32, 64]


def test_config():
    assert from_conf({}) is None
    c = from_conf({"ensemble": {"depth": 3, "policy": "least-loaded"}})
    assert c.levels == ("node", "core") and c.policy == "least-loaded" and c.has_children
    assert not from_conf({"ensemble": {"shape": "", "member": True}}).has_children
    assert from_conf({"ensemble": {"member": True, "parent-uri": "local:///x"}}).parent_uri \
        == "local:///x"
    for bad, msg in [({"shape": "2", "depth": 2}, "not both"), ({"depth": 5}, "depth must be"),
                     ({"policy": "x"}, "policy must be"), ({"batch-max": 0}, "batch-max"),
                     ({"colour": 1}, "unknown key"), ({"member": "yes"}, "member"),
                     ({"parent-uri": 3}, "parent-uri")]:
        with pytest.raises(ConfigError, match=msg):
            from_conf({"ensemble": bad})


class T:
    def __init__(self, n):
        self.outstanding = n


def test_policies():
    kids = [T(0), T(0), T(0)]
    rr = policy.make("rr")
    assert [kids.index(rr.pick(kids)) for _ in range(5)] == [0, 1, 2, 0, 1]
    ll = policy.make("least-loaded")
    kids = [T(3), T(1), T(2)]
    picks = []
    for _ in range(4):
        c = ll.pick(kids)
        c.outstanding += 1
        picks.append(kids.index(c))
    assert picks == [1, 1, 2, 0]  # ties go to the first child


def test_rerank_to_parent_ranks():
    # a leaf's R (ranks 0-1) in its parent's ranks (the child runs on ranks 5 and 6)
    child = {"version": 1, "execution": {"R_lite": [{"rank": "0-1", "children": {"core": "0-3"}}],
                                         "nodelist": ["node[5-6]"], "properties": {"big": "1"}}}
    up = rerank(child, [5, 6])
    assert up["execution"]["R_lite"][0]["rank"] == "5-6"
    assert up["execution"]["properties"] == {"big": "6"}
    assert ranks_of(up) == [5, 6]
    assert child["execution"]["R_lite"][0]["rank"] == "0-1"  # not changed in place


def test_leaf_spec_and_fit():
    from flux.job import JobspecV1
    from flux_ensemble.fits import FitsLeaf
    from flux_ensemble.shape import leaf_spec

    assert leaf_spec(("4",), 32, 36) == ChildSpec(8, 36, True)
    assert leaf_spec(("2", "2"), 32, 36) == ChildSpec(8, 36, True)
    assert leaf_spec(("node", "core"), 2, 4) == ChildSpec(1, 1, False)
    fit = FitsLeaf(leaf_spec(("node", "2"), 4, 8), "node,2")  # leaves: 4 cores on 1 node
    ok = JobspecV1.from_command(["true"], num_tasks=2, cores_per_task=2).jobspec
    assert fit.why_not(ok) is None
    wide = JobspecV1.from_command(["true"], num_tasks=1, cores_per_task=5).jobspec
    assert "slots of 5 cores" in fit.why_not(wide)
    many = JobspecV1.from_command(["true"], num_tasks=3, cores_per_task=2).jobspec
    assert "6 cores requested" in fit.why_not(many)
    nodes = JobspecV1.from_command(["true"], num_tasks=2, num_nodes=2).jobspec
    assert "2 nodes requested" in fit.why_not(nodes)
    with pytest.raises(Exception, match="unsatisfiable"):
        fit.ingest_validate(wide)
    fit.ingest_validate(ok)  # accepted (and remembered)
    assert len(fit.cache) == 2
