"""Match policy `low`: at every level of the graph, visit the lowest ids first (nodes
by id, then sockets, cores, GPUs by id), whatever order the graph was built in."""

from flux.core.resource.graph.policy import MatchPolicy


class Low(MatchPolicy):
    name = "low"

    def sort_key(self, vertex):
        return vertex.id


class LowNodeExclusive(Low):
    name = "lonodex"
    node_exclusive = True
