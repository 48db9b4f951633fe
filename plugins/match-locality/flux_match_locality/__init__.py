"""Match policy `locality`: pack jobs close together in the graph.

At every vertex above the leaves, the walk first visits the children that can hold
the whole remaining request, the fullest of them first (best fit: a small job goes
into the busiest rack, node or socket that still has room, keeping other subtrees
whole for large jobs); then the others, emptiest first, so a job that must span
subtrees spans as few as possible.
"""

from flux.core.resource.graph.policy import MatchPolicy

NOW = 0


class Locality(MatchPolicy):
    name = "locality"
    dynamic = True

    def order(self, walk, vertex, children, req, want):
        if walk.mode != NOW or len(children) < 2 or not children[0].kids:
            return children
        need = walk.need(req)
        if not need:
            return children
        t, n = need[0]
        total = n * want
        fit, rest = [], []
        for c in children:
            f = c.free.get(t, 0) if c.free is not None else 0
            (fit if f >= total else rest).append((f, c.uid, c))
        fit.sort(key=lambda x: (x[0], x[1]))
        rest.sort(key=lambda x: (-x[0], x[1]))
        return [c for _f, _u, c in fit] + [c for _f, _u, c in rest]
