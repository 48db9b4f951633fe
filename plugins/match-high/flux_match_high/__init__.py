"""Match policy `high`: at every level of the graph, visit the highest ids first, so
jobs fill the machine from its top end."""

from flux.core.resource.graph.policy import MatchPolicy


class High(MatchPolicy):
    name = "high"

    def sort_key(self, vertex):
        return -vertex.id


class HighNodeExclusive(High):
    name = "hinodex"
    node_exclusive = True
