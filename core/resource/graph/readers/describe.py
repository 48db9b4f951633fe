"""TOML / YAML description of a modeled cluster (one that need not be this machine).

    [cluster]
    name = "big"              # root vertex name (default cluster0)
    rack-size = 50            # optional: group consecutive nodes into racks

    [[nodes]]                 # one table per node range
    hosts = "node[0-999]"     # RFC 29 hostlist (required)
    ranks = "0-999"           # optional; default: the next ranks in order
    sockets = 2               # default 1
    cores-per-socket = 18     # or: cores = 36 (per node)
    gpus-per-socket = 2       # or: gpus = 4 (per node)
    memory-per-socket = 128   # or: memory = 256 (per node; size in memory-unit)
    memory-unit = "GB"
    properties = ["batch"]    # or a table name = "value"
    perf-class = 1            # for the variation-aware match policy

    [[storage]]               # pools in a second subsystem, "storage"
    name = "ssd"              # basename (vertices ssd0, ssd1, ...)
    count = 1
    size = 1600
    unit = "GB"
    hosts = "node[0-499]"     # the nodes that reach it (edges node -> storage)
"""

from __future__ import annotations

import tomllib
from typing import Any

import yaml
from flux.core.resource.graph.graph import ResourceGraph
from flux.core.resource.graph.readers import source
from flux.core.util import hostlist, idset

_CLUSTER_KEYS = {"name", "rack-size"}
_NODE_KEYS = {"hosts", "ranks", "sockets", "cores-per-socket", "cores", "gpus-per-socket",
              "gpus", "memory-per-socket", "memory", "memory-unit", "properties", "perf-class"}
_STORAGE_KEYS = {"name", "count", "size", "unit", "hosts"}


def _norm(d: Any, where: str, allowed: set[str]) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a table, not {type(d).__name__}")
    out = {}
    for k, v in d.items():
        key = str(k).replace("_", "-")
        if key not in allowed:
            raise ValueError(f"{where}: unknown key '{k}' (allowed: {', '.join(sorted(allowed))})")
        out[key] = v
    return out


def _num(d: dict, key: str, where: str, default: int = 0) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{where}.{key} must be an integer >= 0, not {v!r}")
    return v


def build(desc: dict, what: str = "cluster description") -> ResourceGraph:
    desc = _norm(desc, what, {"cluster", "nodes", "storage"})
    cl = _norm(desc.get("cluster", {}), f"{what}: [cluster]", _CLUSTER_KEYS)
    rack_size = _num(cl, "rack-size", f"{what}: cluster")
    entries = desc.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{what}: needs at least one [[nodes]] table")
    g = ResourceGraph()
    root = g.add_vertex(None, "cluster", id=0, name=str(cl.get("name", "cluster0")))
    plan = []  # (host, rank, spec)
    seen_hosts: set[str] = set()
    seen_ranks: set[int] = set()
    next_rank = 0
    for i, e in enumerate(entries):
        w = f"{what}: nodes[{i}]"
        e = _norm(e, w, _NODE_KEYS)
        if "hosts" not in e:
            raise ValueError(f"{w}: missing 'hosts'")
        try:
            hosts = hostlist.decode(str(e["hosts"]))
        except ValueError as exc:
            raise ValueError(f"{w}.hosts: {exc}") from None
        if not hosts:
            raise ValueError(f"{w}.hosts is empty")
        if "ranks" in e:
            try:
                ranks = idset.decode(str(e["ranks"]))
            except ValueError as exc:
                raise ValueError(f"{w}.ranks: {exc}") from None
            if len(ranks) != len(hosts):
                raise ValueError(f"{w}: {len(ranks)} ranks for {len(hosts)} hosts")
        else:
            ranks = list(range(next_rank, next_rank + len(hosts)))
        sockets = _num(e, "sockets", w, 1)
        if "cores" in e and "cores-per-socket" in e:
            raise ValueError(f"{w}: give cores or cores-per-socket, not both")
        if sockets == 0 and any(k.endswith("-per-socket") for k in e):
            raise ValueError(f"{w}: per-socket counts need sockets >= 1")
        cps = _num(e, "cores-per-socket", w) if "cores-per-socket" in e else None
        cores = _num(e, "cores", w, 0) if cps is None else cps * sockets
        if cps is None and sockets and cores % sockets:
            raise ValueError(f"{w}: {cores} cores do not divide among {sockets} sockets")
        gps = _num(e, "gpus-per-socket", w) if "gpus-per-socket" in e else None
        gpus = _num(e, "gpus", w, 0) if gps is None else gps * sockets
        if gps is None and sockets and gpus % sockets:
            raise ValueError(f"{w}: {gpus} gpus do not divide among {sockets} sockets")
        mps = _num(e, "memory-per-socket", w) if "memory-per-socket" in e else None
        mem = _num(e, "memory", w, 0) if mps is None else mps * sockets
        unit = str(e.get("memory-unit", "GB"))
        props = e.get("properties", [])
        if isinstance(props, list):
            props = {str(p): "" for p in props}
        elif isinstance(props, dict):
            props = {str(k): "" if v in (None, True) else str(v) for k, v in props.items()}
        else:
            raise ValueError(f"{w}.properties must be a list or a table")
        for p in props:
            if not p or any(c in p for c in "!&'\"^`|()"):
                raise ValueError(f"{w}.properties: invalid property name {p!r}")
        if "perf-class" in e:
            props["perf_class"] = str(_num(e, "perf-class", w))
        spec = (sockets, cores, gpus, mem, unit, props)
        for h, r in zip(hosts, ranks, strict=True):
            if h in seen_hosts:
                raise ValueError(f"{w}: host {h} is described twice")
            if r in seen_ranks:
                raise ValueError(f"{w}: rank {r} is used twice")
            seen_hosts.add(h)
            seen_ranks.add(r)
            plan.append((h, r, spec))
        next_rank = max(seen_ranks) + 1
    plan.sort(key=lambda x: x[1])
    by_host = {}
    rack = None
    for n, (h, r, (sockets, cores, gpus, mem, unit, props)) in enumerate(plan):
        parent = root
        if rack_size:
            if n % rack_size == 0:
                rack = g.add_vertex(root, "rack", id=n // rack_size)
            parent = rack
        node = g.add_vertex(parent, "node", id=n, rank=r, name=h, properties=props)
        by_host[h] = node
        if sockets == 0:
            for c in range(cores):
                g.add_vertex(node, "core", id=c)
            for i in range(gpus):
                g.add_vertex(node, "gpu", id=i)
            if mem:
                g.add_vertex(node, "memory", id=0, size=mem, unit=unit)
            continue
        cps, gps, mps = cores // sockets, gpus // sockets, mem // sockets
        for s in range(sockets):
            sock = g.add_vertex(node, "socket", id=s)
            for c in range(s * cps, (s + 1) * cps):
                g.add_vertex(sock, "core", id=c)
            for i in range(s * gps, (s + 1) * gps):
                g.add_vertex(sock, "gpu", id=i)
            if mps:
                g.add_vertex(sock, "memory", id=s, size=mps, unit=unit)
    for i, s in enumerate(desc.get("storage") or []):
        w = f"{what}: storage[{i}]"
        s = _norm(s, w, _STORAGE_KEYS)
        size = _num(s, "size", w)
        if size < 1:
            raise ValueError(f"{w}.size must be >= 1")
        base = str(s.get("name", "storage"))
        try:
            hosts = hostlist.decode(str(s["hosts"])) if "hosts" in s else list(by_host)
        except ValueError as exc:
            raise ValueError(f"{w}.hosts: {exc}") from None
        for h in hosts:
            if h not in by_host:
                raise ValueError(f"{w}.hosts: {h} is not a described node")
        for k in range(_num(s, "count", w, 1)):
            pool = g.add_vertex(root, "storage", basename=base, id=k, size=size,
                                unit=str(s.get("unit", "GB")))
            for h in hosts:
                g.link(by_host[h], pool, "storage")
    return g.finalize()


def read_toml(data: Any) -> ResourceGraph:
    return build(source(data, "TOML cluster description", tomllib.loads), "TOML cluster description")


def read_yaml(data: Any) -> ResourceGraph:
    return build(source(data, "YAML cluster description", yaml.safe_load), "YAML cluster description")


def read_description(data: Any) -> ResourceGraph:
    """TOML or YAML, by file name or by trying both."""
    if isinstance(data, str) and data.endswith((".yaml", ".yml")):
        return read_yaml(data)
    if isinstance(data, dict):
        return build(data)
    try:
        return read_toml(data)
    except ValueError as first:
        try:
            return read_yaml(data)
        except ValueError:
            raise first from None
