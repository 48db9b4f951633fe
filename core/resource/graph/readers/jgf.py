"""JGF reader (RFC 40): `{"graph": {"nodes": [...], "edges": [...]}}` or the inner
object. Containment edges must form one tree; edges of other subsystems become links."""

from __future__ import annotations

from typing import Any

from flux.core.resource.graph.graph import CONTAINMENT, ResourceGraph
from flux.core.resource.graph.readers import parse_json, source


def _int(md: dict, key: str, where: str, default: int | None = None) -> int:
    v = md.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and v.lstrip("-").isdigit():
            return int(v)
        raise ValueError(f"{where}: metadata.{key} must be an integer, not {v!r}")
    return v


def _subsystem(e: dict, where: str) -> str:
    md = e.get("metadata") or {}
    if not isinstance(md, dict):
        raise ValueError(f"{where}.metadata must be an object")
    sub = md.get("subsystem")
    if sub is None and isinstance(md.get("name"), dict) and md["name"]:
        sub = next(iter(md["name"]))  # older Fluxion form {"name": {"containment": "contains"}}
    if sub is None:
        sub = CONTAINMENT
    if not isinstance(sub, str) or not sub:
        raise ValueError(f"{where}: subsystem must be a non-empty string")
    return sub


def build(jgf: Any, what: str = "JGF") -> ResourceGraph:
    if not isinstance(jgf, dict):
        raise ValueError(f"{what} must be an object")
    g = jgf.get("graph", jgf)
    if not isinstance(g, dict):
        raise ValueError(f"{what}: 'graph' must be an object")
    nodes = g.get("nodes")
    edges = g.get("edges", [])
    if not isinstance(nodes, list) or not nodes:
        raise ValueError(f"{what}: graph.nodes must be a non-empty array")
    if not isinstance(edges, list):
        raise ValueError(f"{what}: graph.edges must be an array")
    meta: dict[str, dict] = {}
    order: list[str] = []
    for i, n in enumerate(nodes):
        w = f"{what}: nodes[{i}]"
        if not isinstance(n, dict) or "id" not in n:
            raise ValueError(f"{w} must be an object with an 'id'")
        nid = str(n["id"])
        if nid in meta:
            raise ValueError(f"{w}: duplicate vertex id {nid!r}")
        md = n.get("metadata")
        if not isinstance(md, dict):
            raise ValueError(f"{w} ({nid}) has no 'metadata' object")
        t = md.get("type")
        if not isinstance(t, str) or not t:
            raise ValueError(f"{w} ({nid}): metadata.type must be a non-empty string")
        size = _int(md, "size", w, 1)
        if size < 0:
            raise ValueError(f"{w} ({nid}): metadata.size must be >= 0")
        props = md.get("properties") or {}
        if isinstance(props, list):
            props = {p: "" for p in props}
        if not isinstance(props, dict):
            raise ValueError(f"{w} ({nid}): metadata.properties must be an object")
        meta[nid] = {
            "type": t, "basename": md.get("basename") or t, "name": md.get("name"),
            "id": _int(md, "id", w, 0) if "id" in md else None,
            "rank": _int(md, "rank", w, -1), "size": size, "unit": md.get("unit") or "",
            "properties": {str(k): ("" if v is None else str(v)) for k, v in props.items()},
            "down": md.get("status") in ("down", 1, "1", "DOWN"),
        }
        order.append(nid)
    kids: dict[str, list[str]] = {}
    parent: dict[str, str] = {}
    links: list[tuple[str, str, str]] = []
    for i, e in enumerate(edges):
        w = f"{what}: edges[{i}]"
        if not isinstance(e, dict):
            raise ValueError(f"{w} must be an object")
        s, t = e.get("source"), e.get("target")
        if s is None or t is None:
            raise ValueError(f"{w} needs 'source' and 'target'")
        s, t = str(s), str(t)
        for end in (s, t):
            if end not in meta:
                raise ValueError(f"{w} refers to vertex {end!r}, which is not in graph.nodes")
        sub = _subsystem(e, w)
        if sub == CONTAINMENT:
            if t in parent:
                raise ValueError(f"{w}: vertex {t!r} is contained by both {parent[t]!r} and {s!r}")
            parent[t] = s
            kids.setdefault(s, []).append(t)
        else:
            links.append((s, t, sub))
    roots = [n for n in order if n not in parent]
    if len(roots) != 1:
        raise ValueError(f"{what}: containment must form a single tree, found {len(roots)} roots"
                         f" ({', '.join(roots[:5])}{'...' if len(roots) > 5 else ''})")
    rg = ResourceGraph()
    made: dict[str, Any] = {}
    pos = {n: i for i, n in enumerate(order)}
    stack: list[tuple[str, Any]] = [(roots[0], None)]
    while stack:
        nid, par = stack.pop()
        m = meta[nid]
        rank = m["rank"] if m["rank"] >= 0 or par is None else None
        if m["rank"] < 0 and par is not None and m["type"] != "node" and par.rank >= 0:
            rank = par.rank
        elif m["rank"] < 0:
            rank = -1
        v = rg.add_vertex(par, m["type"], id=m["id"], name=m["name"], basename=m["basename"],
                          rank=rank, size=m["size"], unit=m["unit"], properties=m["properties"])
        v.down = m["down"]
        if v.down:
            rg._ndown += 1
        made[nid] = v
        for k in sorted(kids.get(nid, ()), key=lambda x: pos[x], reverse=True):
            stack.append((k, v))
    if len(made) != len(meta):
        raise ValueError(f"{what}: containment edges form a cycle")
    for s, t, sub in links:
        rg.link(made[s], made[t], sub)
    return rg.finalize()


def read(data: Any) -> ResourceGraph:
    return build(source(data, "JGF", parse_json))
