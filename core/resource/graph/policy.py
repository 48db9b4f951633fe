"""The interface of a match policy (entry-point group `flux.match_policy`).

A policy decides the order in which the matcher's depth-first walk visits the
children of each vertex, and whether whole nodes are allocated. The walk takes the
first match it finds in that order, so the order is the policy.

- `sort_key(vertex)`: a static key; the graph sorts every vertex's children by it
  once, when the policy is set (None keeps the graph's own order). Cheap at match time.
- `dynamic = True` and `order(walk, vertex, children, req, want)`: reorder children at
  every visit (for policies that look at current use, such as locality). Slower.
- `attempts(graph, request)`: a sequence of node filters to try in turn (each a
  callable on node vertices, or None for no filter); the first that yields a match
  wins. The variation-aware policy uses it to try one performance class at a time.
- `node_exclusive`: allocate whole nodes (the rest of a node goes to the job).

The built-in policies (first, low, high, locality, variation) are distributions under
plugins/, written against this class like any site's policy would be.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class MatchPolicy:
    name = "first"
    node_exclusive = False
    dynamic = False

    def __init__(self, node_exclusive: bool | None = None, **options: Any):
        if node_exclusive is not None:
            self.node_exclusive = node_exclusive
        if options:
            raise ValueError(f"match policy '{self.name}': unknown option(s) "
                             f"{', '.join(sorted(options))}")

    def sort_key(self, vertex: Any) -> Any:
        return None

    def order(self, walk: Any, vertex: Any, children: list, req: Any, want: int) -> Iterable:
        return children

    def attempts(self, graph: Any, request: Any) -> Iterable:
        return (None,)

    def __repr__(self) -> str:
        x = " node-exclusive" if self.node_exclusive else ""
        return f"<match policy {self.name}{x}>"


def parse_custom(text: str) -> tuple[str, dict[str, Any]]:
    """Fluxion's custom form 'policy=low node_exclusive=true ...' -> (name, options)."""
    name = "first"
    opts: dict[str, Any] = {}
    for word in text.split():
        key, eq, val = word.partition("=")
        if not eq:
            raise ValueError(f"match policy option '{word}' must be key=value")
        key = key.replace("-", "_")
        if key == "policy":
            name = val
            continue
        if val.lower() not in ("true", "false"):
            raise ValueError(f"match policy option '{key}' must be true or false, not '{val}'")
        b = val.lower() == "true"
        if key == "node_exclusive":
            opts["node_exclusive"] = b
        elif key in ("node_centric", "stop_on_1_matches", "set_stop_on_1_matches"):
            continue  # our walk is always node-centric and stops at the first match
        else:
            raise ValueError(f"unknown match policy option '{key}' (policy, node_exclusive,"
                             " node_centric, stop_on_1_matches)")
    return name, opts
