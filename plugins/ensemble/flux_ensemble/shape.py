"""The shape of an ensemble tree, and how one level splits an instance's resources.

A shape lists, level by level below an instance, how many children each instance of
that level starts: `node` (one child per node), `core` (one per core), or a number.
`2x4` and `2,4` both mean two children, each with four children of its own. The
depth of a tree is the number of levels plus one (the instance itself): depth 2 is
`node`, depth 3 is `node,core`, as in the Flux paper.

A number N splits the nodes in N equal groups when N divides the node count (each
child gets whole nodes, exclusively), or gives every node N / nnodes children with an
equal share of its cores when N is a multiple of the node count.
"""

from __future__ import annotations

import re

import attrs

LEVEL_WORDS = ("node", "core")
DEPTHS = {1: (), 2: ("node",), 3: ("node", "core")}


class ShapeError(ValueError):
    """A shape that cannot be parsed or cannot split the resources it is applied to."""


def parse(text: str | list | tuple | None) -> tuple[str, ...]:
    """`"2x4"`, `"node,core"`, `["node", 4]`, `""` -> ("2", "4") ... (empty: a leaf)."""
    if text is None:
        return ()
    if isinstance(text, (list, tuple)):
        items = [str(x).strip() for x in text]
    elif isinstance(text, str):
        items = [x.strip() for x in re.split(r"[x,]", text)] if text.strip() else []
    else:
        raise ShapeError(f"shape must be a string like '2x4' or 'node,core', not {text!r}")
    for it in items:
        if it in LEVEL_WORDS:
            continue
        if not it.isdigit() or int(it) < 1:
            raise ShapeError(f"shape level '{it}' must be 'node', 'core' or a number >= 1 "
                             f"(in shape {text!r})")
    return tuple(items)


def from_depth(depth: int) -> tuple[str, ...]:
    if depth not in DEPTHS:
        raise ShapeError(f"depth must be 1, 2 or 3 (use an explicit shape such as "
                         f"'node,2,2' for other trees), not {depth}")
    return DEPTHS[depth]


def render(levels: tuple[str, ...]) -> str:
    return ",".join(levels)


@attrs.frozen
class ChildSpec:
    """What one child instance gets: `nnodes` whole nodes (exclusive), or `ncores`
    cores on one node (nnodes == 1, exclusive False)."""

    nnodes: int
    ncores: int  # per node
    exclusive: bool

    def describe(self) -> str:
        if self.exclusive:
            return f"{self.nnodes} node{'s' if self.nnodes > 1 else ''}"
        return f"{self.ncores} core{'s' if self.ncores > 1 else ''}"


def split(level: str, nnodes: int, cores_per_node: int) -> list[ChildSpec]:
    """The children of one level for an instance of `nnodes` nodes with (at least)
    `cores_per_node` cores each."""
    if nnodes < 1 or cores_per_node < 1:
        raise ShapeError("the instance has no resources to split")
    total = nnodes * cores_per_node
    if level == "node":
        n = nnodes
    elif level == "core":
        n = total
    else:
        n = int(level)
    if n <= nnodes:
        if nnodes % n:
            raise ShapeError(f"cannot split {nnodes} nodes into {n} equal groups of whole nodes")
        return [ChildSpec(nnodes // n, cores_per_node, True) for _ in range(n)]
    if n % nnodes:
        raise ShapeError(f"cannot give {n} children to {nnodes} nodes evenly "
                         f"({n} is not a multiple of {nnodes})")
    per_node = n // nnodes
    if per_node > cores_per_node:
        raise ShapeError(f"cannot start {per_node} children on a node of {cores_per_node} "
                         f"cores (each child needs at least one core)")
    return [ChildSpec(1, cores_per_node // per_node, False) for _ in range(n)]


def count_instances(levels: tuple[str, ...], nnodes: int, cores_per_node: int) -> list[int]:
    """Instances per level below the root (checks that every level splits)."""
    out = []
    specs = [ChildSpec(nnodes, cores_per_node, True)]
    for level in levels:
        nxt = []
        for s in specs:
            nxt += split(level, s.nnodes, s.ncores)
        out.append(len(nxt))
        specs = nxt
    return out


def leaf_spec(levels: tuple[str, ...], nnodes: int, cores_per_node: int) -> ChildSpec:
    """What each leaf of the tree gets (every level splits evenly, so all leaves are
    alike)."""
    spec = ChildSpec(nnodes, cores_per_node, True)
    for level in levels:
        spec = split(level, spec.nnodes, spec.ncores)[0]
    return spec
