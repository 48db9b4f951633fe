"""Match policy `first`: take the first fit found in the graph's own order (the
order a reader built it in: ranks, sockets and cores ascending). The cheapest walk."""

from flux.core.resource.graph.policy import MatchPolicy


class First(MatchPolicy):
    name = "first"


class FirstNodeExclusive(First):
    """`firstnodex`: as first, and every job gets whole nodes."""

    name = "firstnodex"
    node_exclusive = True
