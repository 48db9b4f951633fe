"""sched-graph: the `sched` service over the resource graph, with pluggable queue policies."""
