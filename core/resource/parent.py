"""A child instance's resources: the R its parent granted to its job (SPEC 3.1).

Rank 0 of a child asks the parent's job-info service for the job's R (as flux-core's
resource module does), rather than a file or variable from the shell: the job's R
lives in the parent either way, every broker of the child can reach the parent
through `parent-uri`, and R stays what the scheduler wrote, with any `scheduling`
key (JGF) intact for a graph scheduler in the child.

The only change made to it is the renumbering of ranks from 0 (the child's broker
ranks follow the sorted ranks of R), in `execution` and in the `rank` of each vertex
of a JGF under `scheduling`, so both still agree; `nslots` is dropped (an inventory
has none).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from flux.core.util import idset


def rerank(R: dict) -> dict:
    """R with its ranks renumbered 0..n-1 in ascending order (execution and properties)."""
    out = copy.deepcopy(R)
    ex = out.get("execution") or {}
    lite = ex.get("R_lite") or []
    old = sorted({r for e in lite for r in idset.decode(e["rank"])})
    new = {r: i for i, r in enumerate(old)}
    for e in lite:
        e["rank"] = idset.encode([new[r] for r in idset.decode(e["rank"])])
    props = ex.get("properties")
    if isinstance(props, dict):
        ex["properties"] = {k: idset.encode([new[r] for r in idset.decode(v) if r in new])
                            for k, v in props.items()}
    ex.pop("nslots", None)
    graph = (out.get("scheduling") or {}).get("graph") if isinstance(out.get("scheduling"),
                                                                    dict) else None
    for node in (graph or {}).get("nodes") or ():
        meta = node.get("metadata") if isinstance(node, dict) else None
        if isinstance(meta, dict) and meta.get("rank") in new:
            meta["rank"] = new[meta["rank"]]
    return out


def _lookup(parent_uri: str, jobid: int) -> Any:
    import flux

    h = flux.Flux(parent_uri)
    try:
        resp = h.rpc("job-info.lookup", {"id": jobid, "keys": ["R"], "flags": 3}).get()
    finally:
        h.close()
    return resp["R"]


async def fetch_R(broker) -> dict:
    """The job's R from the parent, renumbered for this instance."""
    from flux.core.job import fluid

    a = broker.attrs
    jobid = fluid.parse(a["jobid"])
    R = await asyncio.get_running_loop().run_in_executor(None, _lookup, a["parent-uri"], jobid)
    if not isinstance(R, dict):
        raise ValueError(f"the parent returned an R that is not an object for job {a['jobid']}")
    return rerank(R)
