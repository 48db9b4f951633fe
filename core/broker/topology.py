"""Shape of the tree-based overlay (TBON): who is whose parent."""

from __future__ import annotations

import errno

from flux.core.errors import FluxError


class Topology:
    """A k-ary tree over ranks 0..size-1 (`tbon.topo` = `kary:K`; `kary:0` is flat)."""

    def __init__(self, size: int, k: int = 2):
        if size < 1:
            raise FluxError(errno.EINVAL, f"instance size must be at least 1, not {size}")
        if k < 0:
            raise FluxError(errno.EINVAL, f"tree fanout must be >= 0, not {k}")
        self.size = size
        self.k = k if k > 0 else max(size - 1, 1)

    @classmethod
    def parse(cls, spec: str, size: int, parents: list[int | None] | None = None) -> Topology:
        spec = spec.strip()
        if spec == "custom":  # from [bootstrap] hosts `parent` keys; flat without them
            return CustomTopology(parents if parents is not None else [None] + [0] * (size - 1))
        if spec.startswith("kary:"):
            arg = spec[5:]
        elif spec.isdigit():  # legacy tbon.fanout
            arg = spec
        else:
            raise FluxError(errno.EINVAL, f"unknown tbon.topo '{spec}' (use kary:K or custom)")
        if not arg.isdigit():
            raise FluxError(errno.EINVAL, f"tbon.topo '{spec}': fanout must be an integer")
        return cls(size, int(arg))

    def parent(self, rank: int) -> int | None:
        return None if rank == 0 else (rank - 1) // self.k

    def children(self, rank: int) -> list[int]:
        first = self.k * rank + 1
        return list(range(first, min(first + self.k, self.size)))

    def level(self, rank: int) -> int:
        n = 0
        while rank:
            rank = (rank - 1) // self.k
            n += 1
        return n

    def maxlevel(self) -> int:
        return self.level(self.size - 1)

    def descendants(self, rank: int) -> list[int]:
        out, todo = [], list(self.children(rank))
        while todo:
            r = todo.pop()
            out.append(r)
            todo.extend(self.children(r))
        return sorted(out)

    def child_toward(self, me: int, target: int) -> int | None:
        """The child of `me` whose subtree holds `target`, or None if it is not below me."""
        t = target
        while t > me:
            p = (t - 1) // self.k
            if p == me:
                return t
            t = p
        return None


class CustomTopology(Topology):
    """A tree given as each rank's parent (rank 0 has none), e.g. from a config file."""

    def __init__(self, parents: list[int | None]):
        size = len(parents)
        if size < 1:
            raise FluxError(errno.EINVAL, "instance size must be at least 1, not 0")
        if parents[0] is not None:
            raise FluxError(errno.EINVAL, "rank 0 cannot have a parent")
        for r, p in enumerate(parents[1:], 1):
            if p is None or not 0 <= p < size or p == r:
                raise FluxError(errno.EINVAL, f"rank {r}: invalid parent {p}")
        for r in range(size):  # every rank must reach rank 0 (no cycles)
            seen, t = set(), r
            while t:
                if t in seen:
                    raise FluxError(errno.EINVAL, f"rank {r}: its parents form a cycle")
                seen.add(t)
                t = parents[t]
        self.size = size
        self.k = 0
        self.parents = list(parents)
        self.kids: list[list[int]] = [[] for _ in range(size)]
        for r, p in enumerate(parents[1:], 1):
            self.kids[p].append(r)

    def parent(self, rank: int) -> int | None:
        return self.parents[rank]

    def children(self, rank: int) -> list[int]:
        return list(self.kids[rank])

    def level(self, rank: int) -> int:
        n = 0
        while rank:
            rank = self.parents[rank]
            n += 1
        return n

    def maxlevel(self) -> int:
        return max(self.level(r) for r in range(self.size))

    def child_toward(self, me: int, target: int) -> int | None:
        t = target
        while t:
            p = self.parents[t]
            if p == me:
                return t
            t = p
        return None
