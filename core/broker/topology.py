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
    def parse(cls, spec: str, size: int) -> Topology:
        spec = spec.strip()
        if spec.startswith("kary:"):
            arg = spec[5:]
        elif spec.isdigit():  # legacy tbon.fanout
            arg = spec
        else:
            raise FluxError(errno.EINVAL, f"unknown tbon.topo '{spec}' (use kary:K)")
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
