"""Writers: R version 1 (RFC 20) with R_lite, nodelist, properties, starttime and
expiration, and JGF (RFC 40) for a whole graph or for the subgraph a job holds
(`scheduling = {"writer": "fluxion:jgf", "graph": {...}}`)."""

from __future__ import annotations

from typing import Any

from flux.core.util import hostlist, idset

WRITER = "fluxion:jgf"


def _r_lite(per_rank: dict[int, tuple[set, set]]) -> list[dict]:
    groups: dict[tuple[str, str], list[int]] = {}
    for r in sorted(per_rank):
        cores, gpus = per_rank[r]
        groups.setdefault((idset.encode(cores), idset.encode(gpus)), []).append(r)
    lite = []
    for (cores, gpus), ranks in groups.items():
        children = {"core": cores}
        if gpus:
            children["gpu"] = gpus
        lite.append({"rank": idset.encode(ranks), "children": children})
    return lite


def _rv1(per_rank: dict[int, tuple[set, set]], nodes: dict[int, Any], starttime: float,
         expiration: float, nslots: int | None, local_props: bool) -> dict:
    ex: dict[str, Any] = {"R_lite": _r_lite(per_rank)}
    names = [nodes[r].name for r in sorted(per_rank)]
    if names:
        ex["nodelist"] = [hostlist.encode(names)]
    props: dict[str, set[int]] = {}
    for r in per_rank:
        for name, val in nodes[r].properties.items():
            if val not in ("", None, True):
                continue  # key=value attributes (perf_class...) live in the JGF only
            if name.startswith("+") and not local_props:
                continue
            props.setdefault(name, set()).add(r)
    if props:
        ex["properties"] = {k: idset.encode(v) for k, v in sorted(props.items())}
    if nslots is not None:
        ex["nslots"] = nslots
    ex["starttime"] = float(starttime)
    ex["expiration"] = float(expiration)
    return {"version": 1, "execution": ex}


def alloc_rv1(alloc: Any, scheduling: bool = True) -> dict:
    per_rank: dict[int, tuple[set, set]] = {}
    nodes: dict[int, Any] = {}
    for u in alloc.units:
        if u.rank < 0 or u.node is None:
            continue
        cores, gpus = per_rank.setdefault(u.rank, (set(), set()))
        nodes[u.rank] = u.node
        if u.type == "core":
            cores.add(u.id)
        elif u.type == "gpu":
            gpus.add(u.id)
    R = _rv1(per_rank, nodes, alloc.starttime, alloc.expiration, alloc.nslots or None, False)
    if scheduling:
        R["scheduling"] = {"writer": WRITER, "graph": alloc_jgf(alloc)}
    return R


def graph_rv1(graph: Any, scheduling: bool = False) -> dict:
    per_rank: dict[int, tuple[set, set]] = {}
    for r, node in graph.by_rank.items():
        cores, gpus = per_rank.setdefault(r, (set(), set()))
        for leaf in node.leaves():
            if leaf.type == "core":
                cores.add(leaf.id)
            elif leaf.type == "gpu":
                gpus.add(leaf.id)
    R = _rv1(per_rank, graph.by_rank, graph.starttime, graph.expiration, None, True)
    if scheduling:
        R["scheduling"] = {"writer": WRITER, "graph": graph_jgf(graph)["graph"]}
    return R


def _vertex_json(v: Any, size: int | None = None, exclusive: bool = False) -> dict:
    md: dict[str, Any] = {
        "type": v.type, "basename": v.basename, "name": v.name, "id": v.id,
        "uniq_id": v.uid, "rank": v.rank, "exclusive": exclusive, "unit": v.unit,
        "size": v.size if size is None else size,
        "paths": {"containment": v.path()},
    }
    if v.properties:
        md["properties"] = dict(v.properties)
    if v.down:
        md["status"] = "down"
    return {"id": str(v.uid), "metadata": md}


def _edge_json(a: Any, b: Any, sub: str) -> dict:
    md = {"subsystem": sub}
    if sub == "containment":
        md["relationship"] = "contains"
    return {"source": str(a.uid), "target": str(b.uid), "metadata": md}


def graph_jgf(graph: Any) -> dict:
    nodes = [_vertex_json(v) for v in graph.root.walk()]
    seen = set(graph.root.walk())
    nodes.extend(_vertex_json(v) for v in graph.g if v not in seen)
    edges = [_edge_json(a, b, sub) for a, b, sub in graph.g.edges(data="subsystem")]
    return {"graph": {"nodes": nodes, "edges": edges}}


def alloc_jgf(alloc: Any) -> dict:
    """The vertices a job holds plus their containment ancestors, pools sized to the
    amount held, and the edges among them."""
    keep: dict[Any, tuple[int | None, bool]] = {}
    excl = set(alloc.exclusive)
    for u, amt in alloc.units.items():
        keep[u] = (amt, True)
        for a in u.ancestors():
            if a in keep:
                break
            keep[a] = (None, a in excl)
    for v in excl:
        keep[v] = (None, True)
        for a in v.ancestors():
            keep.setdefault(a, (None, False))
    g = alloc.graph.g
    order = sorted(keep, key=lambda v: v.uid)
    nodes = [_vertex_json(v, *keep[v]) for v in order]
    edges = []
    for v in order:
        for w in g.successors(v):
            if w in keep:
                edges.append(_edge_json(v, w, g.edges[v, w]["subsystem"]))
    return {"nodes": nodes, "edges": edges}
