"""Match policy `variation`: variation-aware placement.

Nodes carry a performance class (the `perf_class` property, an integer; nodes
without one are class 0). A job first tries to fit inside a single class (lowest
class first); failing that, within two adjacent classes, then three..., so the spread
of classes within a job is as small as the free resources allow.
"""

from flux.core.resource.graph.policy import MatchPolicy


def perf_class(node) -> int:
    try:
        return int(node.properties.get("perf_class", 0))
    except (TypeError, ValueError):
        return 0


class Variation(MatchPolicy):
    name = "variation"

    def attempts(self, graph, request):
        classes = sorted({perf_class(v) for v in graph.by_rank.values()})
        if len(classes) < 2:
            yield None
            return
        for width in range(len(classes)):
            for i in range(len(classes) - width):
                lo, hi = classes[i], classes[i + width]
                yield (lambda v, lo=lo, hi=hi: lo <= perf_class(v) <= hi)
