"""The resource graph, its planners and its matcher (graph-based scheduling).

API (what the scheduler service and `flux sched match` use)::

    from flux.core.resource.graph import ResourceGraph, Request, Allocation, MatchError
    g = ResourceGraph.load(reader_name, data)   # flux.resource_reader driver: hwloc/local,
                                                # rv1, jgf, toml, yaml (data: dict, text, path)
    g = ResourceGraph.from_rv1(R)
    req = Request.from_jobspec(jobspec)         # ValueError naming the problem
    req = Request.simple(nslots, cores, gpus, nnodes, exclusive, duration)   # -n/-c/-g/-N/-x
    g.set_policy("first" | policy instance | "policy=low node_exclusive=true")
    alloc = g.allocate(req, jobid, now, duration=None)  # None: cannot start now
    alloc = g.reserve(req, jobid, now, duration=None)   # earliest start >= now; None: never
    g.unreserve(jobid); g.unreserve_all()
    g.free(jobid, ranks=None)                   # whole job, or only those ranks of it
    g.claim(jobid, R)                           # mark an existing job's R allocated (hello)
    ok, reason = g.satisfiable(req)             # ignoring use and drained state
    alloc.jobid, .starttime, .expiration (0.0 = unlimited), .reserved, .nslots,
    alloc.ranks(), .nnodes, .ncores, .ngpus, alloc.to_rv1() -> R with "scheduling" JGF
    g.drain(ranks), g.undrain(ranks), g.add(graph_or_R) -> ranks added,
    g.remove(ranks)                             # ValueError while jobs are allocated there
    g.set_property(ranks, name, value=""), g.remove_property(ranks, name)   # RFC 28
    g.to_rv1(scheduling=False), g.to_jgf(), g.stats(), g.check()  # check raises InconsistentGraph
    g.prune = False                             # disable pruning (benchmarks)
    g.jobs: {jobid: Allocation}; g.down_ranks(); g.ranks()

`duration` 0/None-with-unlimited-jobspec/inf means unlimited: the planner holds the
resources forever (expiration in R is then the graph's own expiration, or 0).
`ranks` arguments take an idset string, an int, or an iterable of ints.
`allocate`/`reserve` raise MatchError if the jobid already holds resources.
"""

from flux.core.resource.graph.graph import (
    Allocation,
    InconsistentGraph,
    MatchError,
    ResourceGraph,
    load_policy,
)
from flux.core.resource.graph.planner import Planner
from flux.core.resource.graph.policy import MatchPolicy
from flux.core.resource.graph.request import ReqNode, Request
from flux.core.resource.graph.vertex import Vertex

__all__ = ["Allocation", "InconsistentGraph", "MatchError", "MatchPolicy", "Planner",
           "ReqNode", "Request", "ResourceGraph", "Vertex", "load_policy"]
