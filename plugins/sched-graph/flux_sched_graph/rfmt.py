"""Small conversions: a jobspec's duration, an R's short form for annotations."""

from __future__ import annotations

import copy
import math
from typing import Any


def duration_of(jobspec: dict) -> float:
    """attributes.system.duration in seconds (0: no limit); ValueError if malformed."""
    system = (jobspec.get("attributes") or {}).get("system") or {}
    d = system.get("duration", 0) or 0
    if isinstance(d, bool) or not isinstance(d, int | float) or d < 0 or math.isnan(d):
        raise ValueError(f"attributes.system.duration must be a number of seconds >= 0, not {d!r}")
    return 0.0 if math.isinf(d) else float(d)


def _ids(name: str, ids: str) -> str:
    return f"{name}{ids}" if "," not in ids and "-" not in ids else f"{name}[{ids}]"


def rlist_of(R: dict) -> str:
    """Short form such as `rank[0-1]/core[0-3],gpu0` (SPEC 3.1), straight from R_lite."""
    parts = []
    for entry in R.get("execution", {}).get("R_lite", []):
        ch = entry.get("children", {})
        kids = [_ids(t, ch[t]) for t in ("core", "gpu") if ch.get(t)]
        parts.append(_ids("rank", entry["rank"]) + "/" + ",".join(kids))
    return " ".join(parts)


def rank_jgf(R: dict, rs: Any) -> dict:
    """R whose JGF (`scheduling`) ranks follow R's own execution ranks.

    A child instance renumbers the R its parent granted from 0 (SPEC 3.1) but the JGF
    still carries the parent's ranks: match the JGF's node vertices to R's hosts by name
    (in rank order if the names do not match) and renumber every vertex with a rank."""
    graph = (R.get("scheduling") or {}).get("graph") if isinstance(R.get("scheduling"), dict) else None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        return R
    by_host = {rk.host: r for r, rk in rs.ranks.items() if rk.host}
    nodes = [n for n in graph["nodes"] if isinstance(n, dict) and isinstance(n.get("metadata"), dict)]
    node_ranks = {}
    for n in nodes:
        md = n["metadata"]
        if md.get("type") == "node" and isinstance(md.get("rank"), int) and md["rank"] >= 0:
            node_ranks[md["rank"]] = md.get("name")
    if not node_ranks:
        return R
    old_new = {old: by_host.get(name) for old, name in node_ranks.items()}
    if None in old_new.values() or len(set(old_new.values())) != len(old_new):
        new_sorted = sorted(rs.ranks)
        if len(new_sorted) != len(node_ranks):
            return R  # cannot tell: leave it to the reader to complain
        old_new = dict(zip(sorted(node_ranks), new_sorted, strict=True))
    if all(o == n for o, n in old_new.items()):
        return R
    out = dict(R)
    out["scheduling"] = copy.deepcopy(R["scheduling"])
    for n in out["scheduling"]["graph"]["nodes"]:
        md = n.get("metadata") if isinstance(n, dict) else None
        if isinstance(md, dict) and isinstance(md.get("rank"), int) and md["rank"] in old_new:
            md["rank"] = old_new[md["rank"]]
    return out
