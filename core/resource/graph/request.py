"""What a jobspec asks for, as a tree the matcher walks (RFC 14 / RFC 25 shapes).

`Request.from_jobspec` accepts canonical jobspecs: any resource type (node, slot,
socket, core, gpu, memory, storage...), counts as integers, `{min, max, operator,
operand}` ranges, RFC 45 range strings or idset strings, `exclusive` (default true
inside a slot, false outside), and RFC 31 constraints in `attributes.system.constraints`.
A malformed jobspec raises ValueError naming the problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flux.core.job import jobspec as _jobspec
from flux.core.resource.graph.constraints import Constraint
from flux.core.util import idset as _idset


class ReqNode:
    """One resource vertex of the request: `count` units or vertices of `type`, each
    holding `children`. `lo..hi` is the allowed count (hi None: as many as there are)."""

    __slots__ = ("type", "lo", "hi", "operator", "operand", "values", "exclusive",
                 "children", "label", "unit", "_need", "_batch", "_whole")

    def __init__(self, type: str, lo: int, hi: int | None = None, exclusive: bool = False,
                 children: tuple = (), label: str | None = None, operator: str = "+",
                 operand: int = 1, values: tuple[int, ...] | None = None, unit: str = ""):
        self.type = type
        self.lo = lo
        self.hi = hi
        self.operator = operator
        self.operand = operand
        self.values = values
        self.exclusive = exclusive
        self.children: tuple[ReqNode, ...] = tuple(children)
        self.label = label
        self.unit = unit
        self._need: Any = None  # matcher caches, per graph generation
        self._batch: Any = None
        self._whole: Any = None  # (graph, generation, {node: slots placed in it when idle})

    @property
    def fixed(self) -> bool:
        return self.hi == self.lo

    def best(self, n: int) -> int | None:
        """The largest allowed count <= n, or None if even the minimum is above n."""
        if self.hi is not None:
            n = min(n, self.hi)
        if n < self.lo:
            return None
        if self.values is not None:
            ok = [v for v in self.values if v <= n]
            return max(ok) if ok else None
        if self.operator == "+":
            return self.lo + ((n - self.lo) // self.operand) * self.operand
        best = self.lo
        while True:
            nxt = best * self.operand if self.operator == "*" else best ** self.operand
            if nxt > n or nxt == best:
                return best
            best = nxt

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def __repr__(self) -> str:
        cnt = str(self.lo) if self.fixed else f"{self.lo}-{'' if self.hi is None else self.hi}"
        x = "!" if self.exclusive else ""
        kids = f"[{', '.join(map(repr, self.children))}]" if self.children else ""
        return f"{self.type}{x}:{cnt}{kids}"


def _count(count: Any, where: str) -> dict:
    if isinstance(count, bool):
        raise ValueError(f"{where}: count must be an integer or a range, not a boolean")
    if isinstance(count, int):
        if count < 0:
            raise ValueError(f"{where}: count must be >= 0, not {count}")
        return {"lo": count, "hi": count}
    if isinstance(count, Mapping):
        lo = count.get("min")
        if not isinstance(lo, int) or isinstance(lo, bool) or lo < 0:
            raise ValueError(f"{where}: count range needs an integer 'min' >= 0")
        hi = count.get("max")
        if hi is not None and (not isinstance(hi, int) or isinstance(hi, bool) or hi < lo):
            raise ValueError(f"{where}: count 'max' must be an integer >= min")
        op = count.get("operator", "+")
        operand = count.get("operand", 1)
        if op not in ("+", "*", "^"):
            raise ValueError(f"{where}: count operator must be '+', '*' or '^', not {op!r}")
        if not isinstance(operand, int) or operand < 1 or (op != "+" and operand < 2):
            raise ValueError(f"{where}: bad count operand {operand!r} for operator '{op}'")
        if op == "^" and lo < 2:
            raise ValueError(f"{where}: count min must be >= 2 with operator '^'")
        return {"lo": lo, "hi": hi, "operator": op, "operand": operand}
    if isinstance(count, str):
        try:
            ids = _idset.decode(count)
        except ValueError:
            ids = None
        if ids is not None:
            if not ids:
                raise ValueError(f"{where}: empty count string")
            if len(ids) == 1:
                return {"lo": ids[0], "hi": ids[0]}
            return {"lo": ids[0], "hi": ids[-1], "values": tuple(ids)}
        try:
            return _count(_jobspec.parse_range_string(count), where)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    raise ValueError(f"{where}: count must be an integer, a range object or a string,"
                     f" not {type(count).__name__}")


def _node(r: Any, where: str, in_slot: bool) -> ReqNode:
    if not isinstance(r, Mapping):
        raise ValueError(f"{where} must be an object")
    t = r.get("type")
    if not isinstance(t, str) or not t:
        raise ValueError(f"{where}.type must be a non-empty string")
    if "count" not in r:
        raise ValueError(f"{where}: missing 'count'")
    c = _count(r["count"], f"{where}.count")
    excl = r.get("exclusive")
    if excl is not None and not isinstance(excl, bool):
        raise ValueError(f"{where}.exclusive must be a boolean")
    if excl is None:
        excl = in_slot
    kids = r.get("with") or []
    if not isinstance(kids, list):
        raise ValueError(f"{where}.with must be an array")
    is_slot = t == "slot"
    if is_slot and not kids:
        raise ValueError(f"{where}: a slot must contain resources ('with')")
    if is_slot and in_slot:
        raise ValueError(f"{where}: a slot may not contain another slot")
    children = tuple(_node(k, f"{where}.with[{i}]", in_slot or is_slot) for i, k in enumerate(kids))
    return ReqNode(t, c["lo"], c["hi"], bool(excl), children, r.get("label"),
                   c.get("operator", "+"), c.get("operand", 1), c.get("values"),
                   r.get("unit", "") or "")


class Request:
    """A jobspec's resource request: `resources` (top-level ReqNodes), `constraint`,
    `duration` (seconds, 0 = unlimited)."""

    __slots__ = ("resources", "constraint", "duration", "jobspec", "_sat")

    def __init__(self, resources: list[ReqNode], constraint: Constraint | None = None,
                 duration: float = 0.0, jobspec: dict | None = None):
        if not resources:
            raise ValueError("a request needs at least one resource")
        self.resources = resources
        self.constraint = constraint
        self.duration = duration
        self.jobspec = jobspec
        self._sat = None  # (graph, generation, (ok, reason)): satisfiable() cache

    @classmethod
    def from_jobspec(cls, jobspec: Any) -> Request:
        if not isinstance(jobspec, Mapping):
            raise ValueError(f"jobspec must be an object, not {type(jobspec).__name__}")
        res = jobspec.get("resources")
        if not isinstance(res, list) or not res:
            raise ValueError("jobspec resources must be a non-empty array")
        nodes = [_node(r, f"resources[{i}]", False) for i, r in enumerate(res)]
        if not any(n.type == "slot" for top in nodes for n in top.walk()):
            raise ValueError("jobspec resources must contain a slot")
        attrs = jobspec.get("attributes") or {}
        if not isinstance(attrs, Mapping):
            raise ValueError("jobspec attributes must be an object")
        system = attrs.get("system") or {}
        if not isinstance(system, Mapping):
            raise ValueError("jobspec attributes.system must be an object")
        dur = system.get("duration", 0) or 0
        if isinstance(dur, bool) or not isinstance(dur, int | float) or dur < 0:
            raise ValueError(f"attributes.system.duration must be a number >= 0, not {dur!r}")
        cons = system.get("constraints")
        constraint = Constraint.compile(cons) if cons not in (None, {}) else None
        return cls(nodes, constraint, float(dur) if math.isfinite(dur) else 0.0, dict(jobspec))

    @classmethod
    def simple(cls, nslots: int = 1, cores: int = 1, gpus: int = 0, nnodes: int = 0,
               exclusive: bool = False, duration: float = 0.0,
               constraint: Any = None) -> Request:
        """The request `flux run -n/-c/-g/-N [-x]` would build (SPEC 2.5)."""
        kids = [ReqNode("core", cores, cores, True)]
        if gpus:
            kids.append(ReqNode("gpu", gpus, gpus, True))
        if nnodes:
            per = -(-nslots // nnodes)
            slot = ReqNode("slot", per, per, False, tuple(kids), "task")
            top = ReqNode("node", nnodes, nnodes, exclusive, (slot,))
        else:
            top = ReqNode("slot", nslots, nslots, False, tuple(kids), "task")
        c = Constraint.compile(constraint) if constraint else None
        return cls([top], c, duration)

    def counts(self) -> dict[str, int]:
        """Minimum units of each type the request needs in all (slots multiplied out)."""
        out: dict[str, int] = {}

        def visit(n: ReqNode, mult: int) -> None:
            m = mult * n.lo
            if n.type != "slot":
                out[n.type] = out.get(n.type, 0) + m
            for c in n.children:
                visit(c, m)

        for top in self.resources:
            visit(top, 1)
        return out

    def nslots(self) -> int:
        """Minimum number of slots asked for (slot counts multiplied by their parents')."""
        total = 0

        def visit(n: ReqNode, mult: int) -> None:
            nonlocal total
            m = mult * n.lo
            if n.type == "slot":
                total += m
                return
            for c in n.children:
                visit(c, m)

        for top in self.resources:
            visit(top, 1)
        return total

    def __repr__(self) -> str:
        return f"Request({self.resources!r}, duration={self.duration})"
