"""Small conversions: a jobspec's duration, an R's short form for annotations."""

from __future__ import annotations

import math


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
