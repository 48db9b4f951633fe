"""R version 1 reader: R as a parent grants it (RFC 20).

With a JGF under `scheduling` (writer `fluxion:jgf`, or no writer) the graph is
rebuilt exactly from it (sockets, memory, storage... included). Otherwise the graph
is cluster > node (one per rank, named from nodelist) > core, gpu.
"""

from __future__ import annotations

from typing import Any

from flux.core.resource.graph.graph import ResourceGraph
from flux.core.resource.graph.readers import jgf, parse_json, source
from flux.core.resource.rv1 import ResourceSet


def read(data: Any) -> ResourceGraph:
    R = source(data, "R", parse_json)
    rs = ResourceSet.from_dict(R)  # validates; RError (a ValueError) names the problem
    sched = R.get("scheduling")
    if isinstance(sched, dict) and sched.get("graph") and sched.get("writer", "fluxion:jgf") \
            == "fluxion:jgf":
        g = jgf.build(sched["graph"], "R scheduling JGF")
        missing = sorted(set(rs.ranks) - set(g.by_rank))
        if missing:
            raise ValueError(f"R scheduling JGF lacks rank(s) {missing[:8]} named in R_lite")
    else:
        g = ResourceGraph()
        root = g.add_vertex(None, "cluster", id=0)
        for r in sorted(rs.ranks):
            rk = rs.ranks[r]
            props = {name: "" for name, ids in rs.properties.items() if r in ids}
            node = g.add_vertex(root, "node", id=r, rank=r, name=rk.host or f"node{r}",
                                properties=props)
            for c in sorted(rk.cores):
                g.add_vertex(node, "core", id=c)
            for i in sorted(rk.gpus):
                g.add_vertex(node, "gpu", id=i)
        g.finalize()
    g.starttime = rs.starttime
    g.expiration = rs.expiration
    return g
