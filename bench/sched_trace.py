"""Queue policies side by side on a synthetic trace, replayed in simulated time.

A modeled cluster (default 128 nodes of 36 cores and 4 GPUs) and a trace of mixed jobs
(default 10,000): sizes and run times drawn from heavy-tailed distributions, arrivals
at a rate that keeps the machine oversubscribed. Each policy (fcfs, easy,
conservative, hybrid) schedules the same trace through the scheduler's own JobQueue
and the resource graph (no broker; the clock jumps from event to event). Users ask
for more time than their jobs use (limit = run time x 1..3), as on real systems, so
jobs end early and leave holes that backfill can use.

    python bench/sched_trace.py [--jobs 10000] [--nodes 128] [--seed 1] [--queue-depth 32]

Printed per policy: utilization (core-seconds used / cores x makespan), mean and
median wait, mean bounded slowdown, makespan, and the scheduler's CPU time (passes
plus frees, measured with time.process_time).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
import time

from flux.core.resource.graph import Request, ResourceGraph
from flux.core.resource.rv1 import ResourceSet
from flux_sched_graph.jobqueue import JobQueue, PendingJob
from flux_sched_graph.policy import load_queue_policy


class TraceJob:
    __slots__ = ("id", "submit", "runtime", "limit", "nnodes", "nslots", "cores", "gpus",
                 "exclusive", "start")

    def __init__(self, **kw):
        self.start = None
        for k, v in kw.items():
            setattr(self, k, v)

    @property
    def ncores_used(self) -> int:
        return self.nslots * self.cores

    def request(self) -> Request:
        return Request.simple(self.nslots, self.cores, self.gpus, self.nnodes, self.exclusive,
                              self.limit)


def make_trace(njobs: int, nodes: int, cores: int, gpus: int, seed: int, load: float) -> list[TraceJob]:
    """Heavy tails: node counts ~ Zipf-like (P(n) ~ n^-1.6), run times ~ log-normal
    (median 10 min, sigma 1.5: a few hours-long jobs, many short ones)."""
    rnd = random.Random(seed)
    weights = [n ** -1.6 for n in range(1, nodes + 1)]
    jobs = []
    for i in range(njobs):
        runtime = min(max(30.0, rnd.lognormvariate(math.log(600), 1.5)), 24 * 3600.0)
        limit = math.ceil(runtime * rnd.uniform(1.0, 3.0) / 60.0) * 60.0
        kind = rnd.random()
        if kind < 0.45:  # sub-node CPU jobs (core-level co-scheduling)
            j = dict(nnodes=0, nslots=rnd.choice([1, 1, 2, 4, 8]), cores=rnd.choice([1, 2, 4, 9]),
                     gpus=0, exclusive=False)
        elif kind < 0.60:  # GPU jobs sharing nodes with CPU jobs (MuMMI-style)
            j = dict(nnodes=0, nslots=rnd.choice([1, 1, 2, 4]), cores=rnd.choice([1, 4, 9]),
                     gpus=1, exclusive=False)
        else:  # whole-node jobs, heavy-tailed node counts
            n = rnd.choices(range(1, nodes + 1), weights)[0]
            j = dict(nnodes=n, nslots=n, cores=cores, gpus=0, exclusive=True)
        jobs.append(TraceJob(id=i + 1, submit=0.0, runtime=runtime, limit=limit, **j))
    # arrivals: Poisson, at `load` times the rate the machine can absorb
    work = sum(j.ncores_used * j.runtime for j in jobs)
    span = work / (nodes * cores) / load
    t = 0.0
    rate = njobs / span
    for j in jobs:
        t += rnd.expovariate(rate)
        j.submit = t
    return jobs


def build_graph(nodes: int, cores: int, gpus: int) -> ResourceGraph:
    entry = {"hosts": f"node[0-{nodes - 1}]", "cores": f"0-{cores - 1}"}
    if gpus:
        entry["gpus"] = f"0-{gpus - 1}"
    return ResourceGraph.from_rv1(ResourceSet.from_config([entry]).to_dict())


def replay(trace: list[TraceJob], policy_name: str, params: dict, nodes: int, cores: int,
           gpus: int, match_policy: str | None) -> dict:
    g = build_graph(nodes, cores, gpus)
    if match_policy:
        g.set_policy(match_policy)
    q = JobQueue(g, load_queue_policy(policy_name, params))
    events: list[tuple[float, int, int]] = []  # (time, kind 0=finish 1=arrive, index)
    for i, j in enumerate(trace):
        j.start = None
        heapq.heappush(events, (j.submit, 1, i))
    cpu = 0.0
    busy_core_seconds = 0.0
    end = 0.0
    while events:
        now = events[0][0]
        c0 = time.process_time()
        while events and events[0][0] == now:
            _t, kind, i = heapq.heappop(events)
            j = trace[i]
            if kind == 0:
                g.free(j.id)
                q.changed()
                end = max(end, now)
            else:
                q.add(PendingJob(j.id, 16, j.submit, j.request(), j.limit,
                                 shape=(j.nnodes, j.nslots, j.cores, j.gpus, j.exclusive)))
        while True:
            res = q.run(now)
            for pj, _alloc in res.started:
                tj = trace[pj.id - 1]
                tj.start = now
                busy_core_seconds += tj.ncores_used * tj.runtime
                heapq.heappush(events, (now + tj.runtime, 0, pj.id - 1))
            if not res.more:
                break
        cpu += time.process_time() - c0
    if len(q):
        raise RuntimeError(f"{policy_name}: {len(q)} jobs never started")
    g.check()
    first = min(j.submit for j in trace)
    makespan = end - first
    waits = [j.start - j.submit for j in trace]
    slow = [max(1.0, (w + j.runtime) / max(j.runtime, 10.0)) for w, j in zip(waits, trace, strict=True)]
    return {"policy": q.policy.describe(), "utilization": busy_core_seconds / (nodes * cores * makespan),
            "mean_wait": statistics.fmean(waits), "median_wait": statistics.median(waits),
            "slowdown": statistics.fmean(slow), "makespan": makespan, "cpu": cpu,
            "passes": q.passes, "matches": q.matches}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=10000)
    p.add_argument("--nodes", type=int, default=128)
    p.add_argument("--cores", type=int, default=36)
    p.add_argument("--gpus", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--load", type=float, default=1.2, help="offered load (1.0 = exactly the capacity)")
    p.add_argument("--queue-depth", default="32")
    p.add_argument("--reservation-depth", default="8", help="hybrid's reservation-depth")
    p.add_argument("--match-policy", default=None)
    p.add_argument("--policies", default="fcfs,easy,hybrid,conservative")
    args = p.parse_args()
    trace = make_trace(args.jobs, args.nodes, args.cores, args.gpus, args.seed, args.load)
    print(f"trace: {len(trace)} jobs on {args.nodes} nodes x {args.cores} cores x {args.gpus} gpus, "
          f"offered load {args.load}, seed {args.seed}; "
          f"{sum(1 for j in trace if j.nnodes)} whole-node jobs "
          f"(max {max(j.nnodes for j in trace)} nodes), "
          f"run times {min(j.runtime for j in trace):.0f}s..{max(j.runtime for j in trace) / 3600:.1f}h")
    rows = []
    for name in args.policies.split(","):
        params = {"queue-depth": args.queue_depth}
        if name == "hybrid":
            params["reservation-depth"] = args.reservation_depth
        rows.append(replay(trace, name, params, args.nodes, args.cores, args.gpus, args.match_policy))
        r = rows[-1]
        print(f"{r['policy']:<52} util {r['utilization']:6.1%}  mean wait {r['mean_wait'] / 3600:7.2f}h  "
              f"median wait {r['median_wait'] / 60:7.1f}m  slowdown {r['slowdown']:8.1f}  "
              f"makespan {r['makespan'] / 86400:6.2f}d  sched cpu {r['cpu']:6.1f}s "
              f"({r['matches']} matches, {r['cpu'] / max(r['matches'], 1) * 1e3:.2f} ms each)",
              flush=True)
    base = next((r for r in rows if r["policy"].startswith("fcfs")), None)
    if base:
        for r in rows:
            if r is not base:
                print(f"{r['policy'].split()[0]:<13} vs fcfs: utilization "
                      f"{(r['utilization'] - base['utilization']) * 100:+.1f} points "
                      f"({r['utilization'] / base['utilization'] - 1:+.1%}), mean wait "
                      f"{r['mean_wait'] / base['mean_wait'] - 1:+.1%}, makespan "
                      f"{r['makespan'] / base['makespan'] - 1:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
