"""Resource sets in R version 1 form (RFC 20): ranks with cores and GPUs, host names,
properties, and a time window. Used for the instance inventory and for job R."""

from __future__ import annotations

import copy
from typing import Any

from flux.core.util import hostlist, idset


class RError(ValueError):
    """An R object that does not follow RFC 20; the message names the problem."""


class Rank:
    __slots__ = ("rank", "host", "cores", "gpus")

    def __init__(self, rank: int, host: str, cores: set[int], gpus: set[int]):
        self.rank, self.host, self.cores, self.gpus = rank, host, cores, gpus

    def copy(self) -> Rank:
        return Rank(self.rank, self.host, set(self.cores), set(self.gpus))


class ResourceSet:
    """An RFC 20 R: `ranks` maps broker rank -> Rank(host, cores, gpus)."""

    def __init__(self, ranks: dict[int, Rank] | None = None, properties: dict[str, set[int]] | None = None,
                 starttime: float = 0.0, expiration: float = 0.0, nslots: int | None = None,
                 scheduling: Any = None):
        self.ranks: dict[int, Rank] = ranks or {}
        self.properties: dict[str, set[int]] = properties or {}
        self.starttime = starttime
        self.expiration = expiration
        self.nslots = nslots
        self.scheduling = scheduling

    # ---------------------------------------------------------------- parse
    @classmethod
    def from_dict(cls, R: Any) -> ResourceSet:
        if not isinstance(R, dict):
            raise RError("R must be a JSON object")
        if R.get("version") != 1:
            raise RError(f"R version must be 1, not {R.get('version')!r}")
        ex = R.get("execution")
        if not isinstance(ex, dict):
            raise RError("R is missing the 'execution' object")
        lite = ex.get("R_lite")
        if not isinstance(lite, list):
            raise RError("R execution.R_lite must be a list")
        ranks: dict[int, Rank] = {}
        for i, entry in enumerate(lite):
            if not isinstance(entry, dict) or not isinstance(entry.get("rank"), str):
                raise RError(f"R_lite[{i}] must have a 'rank' idset string")
            children = entry.get("children")
            if not isinstance(children, dict):
                raise RError(f"R_lite[{i}] must have a 'children' object")
            try:
                rlist = idset.decode(entry["rank"])
                cores = set(idset.decode(children.get("core", "")))
                gpus = set(idset.decode(children.get("gpu", "")))
            except (ValueError, AttributeError) as exc:
                raise RError(f"R_lite[{i}]: {exc}") from None
            for r in rlist:
                if r in ranks:
                    raise RError(f"R_lite: rank {r} appears more than once")
                ranks[r] = Rank(r, "", set(cores), set(gpus))
        nodelist = ex.get("nodelist", [])
        if not isinstance(nodelist, list):
            raise RError("R execution.nodelist must be a list of hostlists")
        hosts: list[str] = []
        try:
            for h in nodelist:
                hosts.extend(hostlist.decode(h))
        except (ValueError, AttributeError) as exc:
            raise RError(f"R nodelist: {exc}") from None
        order = sorted(ranks)
        if hosts and len(hosts) != len(order):
            raise RError(f"R nodelist names {len(hosts)} hosts for {len(order)} ranks")
        for r, h in zip(order, hosts, strict=False):
            ranks[r].host = h
        props: dict[str, set[int]] = {}
        for name, ids in (ex.get("properties") or {}).items():
            if any(c in name for c in "!&'\"^`|()"):
                raise RError(f"R property name '{name}' has a forbidden character")
            try:
                props[name] = set(idset.decode(ids))
            except (ValueError, AttributeError) as exc:
                raise RError(f"R property '{name}': {exc}") from None
        st = ex.get("starttime", 0) or 0
        exp = ex.get("expiration", 0) or 0
        if not isinstance(st, int | float) or not isinstance(exp, int | float):
            raise RError("R starttime/expiration must be numbers")
        if exp and st and exp <= st:
            raise RError("R expiration must be after starttime")
        return cls(ranks, props, float(st), float(exp), ex.get("nslots"), R.get("scheduling"))

    @classmethod
    def from_config(cls, entries: list[dict], hosts_by_rank: list[str] | None = None) -> ResourceSet:
        """From `[[resource.config]]` tables: {hosts, cores, gpus?, properties?}.

        Ranks follow `hosts_by_rank` (the instance's hostlist) when given, else the
        order hosts appear in the config."""
        if not isinstance(entries, list) or not entries:
            raise RError("resource.config must be a non-empty array of tables")
        per_host: dict[str, tuple[set[int], set[int], set[str]]] = {}
        order: list[str] = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "hosts" not in e:
                raise RError(f"resource.config[{i}] must be a table with 'hosts'")
            try:
                hs = hostlist.decode(str(e["hosts"]))
                cores = set(idset.decode(str(e.get("cores", ""))))
                gpus = set(idset.decode(str(e.get("gpus", ""))))
            except ValueError as exc:
                raise RError(f"resource.config[{i}]: {exc}") from None
            props = e.get("properties", [])
            if not isinstance(props, list):
                raise RError(f"resource.config[{i}].properties must be a list")
            for h in hs:
                if h not in per_host:
                    per_host[h] = (set(), set(), set())
                    order.append(h)
                per_host[h][0].update(cores)
                per_host[h][1].update(gpus)
                per_host[h][2].update(props)
        names = hosts_by_rank if hosts_by_rank else order
        ranks: dict[int, Rank] = {}
        props_out: dict[str, set[int]] = {}
        for r, h in enumerate(names):
            if h not in per_host:
                raise RError(f"host {h} (rank {r}) is not in resource.config")
            c, g, p = per_host[h]
            ranks[r] = Rank(r, h, set(c), set(g))
            for name in p:
                props_out.setdefault(name, set()).add(r)
        return cls(ranks, props_out)

    # ------------------------------------------------------------- compose
    def to_dict(self, with_scheduling: bool = False) -> dict:
        groups: dict[tuple[str, str], list[int]] = {}
        for r in sorted(self.ranks):
            rk = self.ranks[r]
            key = (idset.encode(rk.cores), idset.encode(rk.gpus))
            groups.setdefault(key, []).append(r)
        lite = []
        for (cores, gpus), rlist in groups.items():
            children = {"core": cores}
            if gpus:
                children["gpu"] = gpus
            lite.append({"rank": idset.encode(rlist), "children": children})
        ex: dict[str, Any] = {"R_lite": lite, "starttime": self.starttime,
                              "expiration": self.expiration}
        hosts = [self.ranks[r].host for r in sorted(self.ranks)]
        if hosts and all(hosts):
            ex["nodelist"] = [hostlist.encode(hosts)]
        if self.nslots is not None:
            ex["nslots"] = self.nslots
        if self.properties:
            ex["properties"] = {k: idset.encode(v) for k, v in self.properties.items() if v}
        out: dict[str, Any] = {"version": 1, "execution": ex}
        if with_scheduling and self.scheduling is not None:
            out["scheduling"] = self.scheduling
        return out

    def copy(self) -> ResourceSet:
        return ResourceSet({r: rk.copy() for r, rk in self.ranks.items()},
                           {k: set(v) for k, v in self.properties.items()},
                           self.starttime, self.expiration, self.nslots,
                           copy.deepcopy(self.scheduling))

    # -------------------------------------------------------------- queries
    @property
    def nnodes(self) -> int:
        return len(self.ranks)

    @property
    def ncores(self) -> int:
        return sum(len(r.cores) for r in self.ranks.values())

    @property
    def ngpus(self) -> int:
        return sum(len(r.gpus) for r in self.ranks.values())

    def rank_idset(self) -> str:
        return idset.encode(self.ranks)

    def nodelist(self) -> list[str]:
        return [self.ranks[r].host for r in sorted(self.ranks)]

    def hostlist(self) -> str:
        return hostlist.encode(self.nodelist())

    def rlist(self) -> str:
        """Short form such as `rank[0-1]/core[0-3],gpu0` (SPEC 3.1)."""
        parts = []
        for entry in self.to_dict()["execution"]["R_lite"]:
            ranks = entry["rank"]
            rs = f"rank{ranks}" if "," not in ranks and "-" not in ranks else f"rank[{ranks}]"
            ch = []
            for t in ("core", "gpu"):
                ids = entry["children"].get(t)
                if ids:
                    ch.append(f"{t}{ids}" if "," not in ids and "-" not in ids else f"{t}[{ids}]")
            parts.append(rs + "/" + ",".join(ch))
        return " ".join(parts)

    # ---------------------------------------------------------- set algebra
    def subtract(self, other: ResourceSet) -> ResourceSet:
        out = self.copy()
        for r, rk in other.ranks.items():
            mine = out.ranks.get(r)
            if mine is None:
                continue
            mine.cores -= rk.cores
            mine.gpus -= rk.gpus
        return out

    def union(self, other: ResourceSet) -> ResourceSet:
        out = self.copy()
        for r, rk in other.ranks.items():
            mine = out.ranks.get(r)
            if mine is None:
                out.ranks[r] = rk.copy()
            else:
                mine.cores |= rk.cores
                mine.gpus |= rk.gpus
                mine.host = mine.host or rk.host
        return out

    def select_ranks(self, ranks) -> ResourceSet:
        keep = set(ranks)
        out = self.copy()
        out.ranks = {r: rk for r, rk in out.ranks.items() if r in keep}
        out.properties = {k: v & keep for k, v in out.properties.items()}
        return out
