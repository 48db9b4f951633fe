"""Resource readers (flux.resource_reader): local, rv1, jgf, toml, yaml; bad input is
named; the storage subsystem lets a request use what is near a node."""

from __future__ import annotations

import json
import os

import pytest
from flux.core.plugins import installed_drivers
from flux.core.resource.graph import Request, ResourceGraph

TOML = """
[cluster]
name = "c"
rack-size = 2

[[nodes]]
hosts = "a[0-1]"
sockets = 2
cores-per-socket = 2
properties = ["fast"]

[[nodes]]
hosts = "b[0-1]"
cores = 4
gpus = 2

[[storage]]
name = "ssd"
size = 100
hosts = "a[0-1]"
"""


def test_readers_are_installed_drivers():
    have = installed_drivers("flux.resource_reader")
    for name in ("hwloc", "local", "rv1", "jgf", "toml", "yaml"):
        assert name in have


def test_local_reader_matches_affinity():
    g = ResourceGraph.load("local", {"rank": 3, "hostname": "me"})
    assert g.ranks() == [3] and g.by_rank[3].name == "me"
    cores = sorted(v.id for v in g.vertices("core"))
    assert cores == sorted(os.sched_getaffinity(0))
    assert g.stats()["types"]["socket"]["total"] >= 1
    g.check()


def test_toml_reader_from_file_and_text(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(TOML)
    for src in (str(f), f, TOML):
        g = ResourceGraph.load("toml", src)
        st = g.stats()["types"]
        assert st["node"]["total"] == 4 and st["core"]["total"] == 16 and st["gpu"]["total"] == 4
        assert st["storage"]["total"] == 100 and g.root.name == "c"
        assert "storage" in g.subsystems()
        assert g.by_rank[0].properties == {"fast": ""} and g.by_rank[2].name == "b0"


def test_storage_near_nodes():
    g = ResourceGraph.load("toml", TOML)
    js = {"version": 1, "resources": [{"type": "node", "count": 1, "with": [
        {"type": "slot", "count": 1, "label": "task", "with": [{"type": "core", "count": 1}]},
        {"type": "storage", "count": 60}]}],
          "tasks": [], "attributes": {"system": {"duration": 10}}}
    a = g.allocate(Request.from_jobspec(js), 1, 0.0)
    assert a is not None and a.ranks() == [0] and a.count("storage") == 60
    # storage is reachable only from the a-nodes: the second job needs 60 more, only 40 left
    assert g.allocate(Request.from_jobspec(js), 2, 0.0) is None
    g.check()
    jgf = a.to_rv1()["scheduling"]["graph"]
    subs = {e["metadata"]["subsystem"] for e in jgf["edges"]}
    assert subs == {"containment", "storage"}
    g.free(1)
    g.check()
    assert g.allocate(Request.from_jobspec(js), 2, 0.0) is not None


def test_rv1_reader_plain():
    R = {"version": 1, "execution": {
        "R_lite": [{"rank": "0-1", "children": {"core": "0-3", "gpu": "0"}},
                   {"rank": "2", "children": {"core": "0-1"}}],
        "nodelist": ["h[0-2]"], "properties": {"big": "0-1"},
        "starttime": 10.0, "expiration": 20.0}}
    g = ResourceGraph.load("rv1", json.dumps(R))
    assert g.ranks() == [0, 1, 2] and g.by_rank[2].name == "h2"
    assert g.stats()["types"]["core"]["total"] == 10 and g.expiration == 20.0
    assert g.by_rank[1].properties == {"big": ""}
    out = g.to_rv1()
    assert out["execution"]["properties"] == {"big": "0-1"}
    assert sorted(e["rank"] for e in out["execution"]["R_lite"]) == ["0-1", "2"]


def test_jgf_reader_old_edge_form_and_status():
    jgf = {"graph": {"nodes": [
        {"id": "0", "metadata": {"type": "cluster", "name": "c0", "id": 0}},
        {"id": "1", "metadata": {"type": "node", "name": "x", "id": 0, "rank": 0,
                                 "status": "down"}},
        {"id": "2", "metadata": {"type": "core", "id": 5, "rank": 0}}],
        "edges": [{"source": "0", "target": "1", "metadata": {"name": {"containment": "contains"}}},
                  {"source": "1", "target": "2"}]}}
    g = ResourceGraph.load("jgf", jgf)
    assert g.down_ranks() == [0] and [v.id for v in g.vertices("core")] == [5]
    g.check()


@pytest.mark.parametrize("reader, data, msg", [
    ("toml", "[[nodes]]\nhosts = 'a[0-1'\n", "hosts"),
    ("toml", "[[nodes]]\ncores = 4\n", "missing 'hosts'"),
    ("toml", "[[nodes]]\nhosts = 'a0'\ncors = 4\n", "unknown key 'cors'"),
    ("toml", "[[nodes]]\nhosts = 'a0'\ncores = -1\n", "integer >= 0"),
    ("toml", "[[nodes]]\nhosts = 'a0'\n[[nodes]]\nhosts = 'a0'\n", "described twice"),
    ("toml", "nodes = [\n", "not valid"),
    ("toml", "/nonexistent/file.toml", "cannot read"),
    ("yaml", "nodes: 3\n", "at least one"),
    ("jgf", {"graph": {"nodes": []}}, "non-empty"),
    ("jgf", {"graph": {"nodes": [{"id": "0", "metadata": {"type": "a"}},
                                 {"id": "1", "metadata": {"type": "b"}}], "edges": []}},
     "single tree"),
    ("jgf", {"graph": {"nodes": [{"id": "0", "metadata": {"type": "a"}}],
                       "edges": [{"source": "0", "target": "9"}]}}, "not in graph.nodes"),
    ("jgf", {"graph": {"nodes": [{"id": "0"}]}}, "metadata"),
    ("rv1", {"version": 2}, "version must be 1"),
    ("rv1", {"version": 1, "execution": {"R_lite": [{"rank": "x", "children": {}}]}}, "R_lite"),
    ("rv1", '{"version": 1,', "not valid"),
])
def test_malformed_input_names_the_problem(reader, data, msg):
    with pytest.raises(ValueError, match=msg):
        ResourceGraph.load(reader, data)


def test_unknown_reader_lists_installed():
    with pytest.raises(LookupError, match="installed: .*jgf"):
        ResourceGraph.load("grug", {})
