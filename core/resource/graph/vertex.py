"""One resource in the graph: a cluster, rack, node, socket, core, gpu, memory pool...

Vertices are the nodes of the networkx graph themselves (hashed by identity), so a
walk never translates between keys and objects. The containment tree is cached on
each vertex (`parent`, `kids`: the walk's hot path reads these, not networkx), and so
are the edges of other subsystems (`links`).

Counters kept per vertex (see graph.py for how they change):
- `total[type]`: units of each type in this subtree, this vertex included (pool
  vertices count their `size`, others count 1). Changes only when the graph does.
- `free[type]`: the same, counting only what is usable now: not allocated, not drained;
  a non-pool vertex counts itself only when nothing under it is allocated (idle).
  These are the pruning aggregates. Pool (leaf) vertices have `free = None`: their
  free amount is `size - used`.
- `used`: units allocated now in this subtree (allocations, not reservations).
"""

from __future__ import annotations

from typing import Any


class Vertex:
    __slots__ = ("uid", "type", "basename", "name", "id", "rank", "size", "unit",
                 "properties", "down", "parent", "kids", "links", "node", "depth",
                 "total", "free", "used", "plan", "plans", "bit", "mall", "mjobs")

    def __init__(self, uid: int, type: str, basename: str, name: str, id: int, rank: int = -1,
                 size: int = 1, unit: str = "", properties: dict[str, str] | None = None):
        self.uid = uid
        self.type = type
        self.basename = basename
        self.name = name
        self.id = id
        self.rank = rank
        self.size = size
        self.unit = unit
        self.properties: dict[str, str] = properties or {}
        self.down = False
        self.parent: Vertex | None = None
        self.kids: list[Vertex] = []
        self.links: list[Vertex] = []
        self.node: Vertex | None = None  # the node vertex at or above this one
        self.depth = 0
        self.total: dict[str, int] = {}
        self.free: dict[str, int] | None = None
        self.used = 0
        self.plan: Any = None  # Planner of a pool vertex, created on first span
        self.plans: dict[str, Any] | None = None  # per-type planners of node/root vertices
        # unit leaves (size 1) have a bit within their node, per type; a node keeps the
        # mask of all its units per type (`mall`) and, per job, the units it holds there
        # with the job's time window (`mjobs`: jobid -> (start, end, {type: mask})), so
        # "how many cores of this node are free over [t, t+d)" is a few ORs and a popcount.
        self.bit = -1
        self.mall: dict[str, int] | None = None
        self.mjobs: dict[int, tuple] | None = None

    @property
    def leaf(self) -> bool:
        return not self.kids

    def path(self) -> str:
        """Containment path, e.g. /cluster0/rack0/node3/socket1/core20."""
        parts = []
        v: Vertex | None = self
        while v is not None:
            parts.append(v.name)
            v = v.parent
        return "/" + "/".join(reversed(parts))

    def ancestors(self):
        v = self.parent
        while v is not None:
            yield v
            v = v.parent

    def walk(self):
        """This vertex and every containment descendant, depth first."""
        stack = [self]
        while stack:
            v = stack.pop()
            yield v
            if v.kids:
                stack.extend(reversed(v.kids))

    def leaves(self):
        for v in self.walk():
            if not v.kids:
                yield v

    def __repr__(self) -> str:
        r = f" rank={self.rank}" if self.rank >= 0 else ""
        s = f" size={self.size}{self.unit}" if self.size != 1 else ""
        return f"<{self.type} {self.name}{r}{s}>"
