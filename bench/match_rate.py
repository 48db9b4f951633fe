"""Match rate of the graph matcher: single-core jobs on a modeled cluster.

    python bench/match_rate.py                 # 1,000 and 10,000 nodes
    python bench/match_rate.py --nodes 1000 --jobs 20000 --policy low

Each node has 2 sockets x 18 cores x 2 GPUs per socket (4 GPUs per node), nodes in
racks of 50. Jobs are `flux run -n1` (slot > core 1), allocated at increasing
times with a one-hour duration, without frees (the cluster fills as it goes, which
is the harder case for the walk: the first free core moves further away). The rate
is reported with pruning (the default) and without, side by side; `--with-r` also
writes each allocation's R (with its JGF) as the scheduler would.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

from flux.core.resource.graph import Request, ResourceGraph


def model(nodes: int) -> dict:
    return {
        "cluster": {"name": "bench", "rack-size": 50},
        "nodes": [{"hosts": f"node[0-{nodes - 1}]", "sockets": 2, "cores-per-socket": 18,
                   "gpus-per-socket": 2, "memory-per-socket": 128}],
    }


def run(g: ResourceGraph, jobs: int, with_r: bool, start_id: int) -> tuple[int, float]:
    req = Request.simple(nslots=1, cores=1)
    t0 = time.perf_counter()
    n = 0
    for i in range(jobs):
        a = g.allocate(req, start_id + i, float(i), 3600.0)
        if a is None:
            break
        if with_r:
            a.to_rv1()
        n += 1
    return n, time.perf_counter() - t0


def bench(nodes: int, jobs: int, policy: str, with_r: bool, unpruned_jobs: int) -> dict:
    t0 = time.perf_counter()
    g = ResourceGraph.load("yaml", model(nodes))
    build = time.perf_counter() - t0
    g.set_policy(policy)
    gc.collect()
    gc.freeze()  # the graph is long-lived: keep the collector from rescanning it
    n, dt = run(g, jobs, with_r, 1)
    rate = n / dt
    g.check() if nodes <= 1000 else None
    # without pruning: same graph, continue from where the pruned run left the cluster
    g2 = ResourceGraph.load("yaml", model(nodes))
    g2.set_policy(policy)
    # bring it to the same fill level first (pruned, not timed), then time unpruned jobs
    run(g2, n, False, 1)
    g2.prune = False
    n2, dt2 = run(g2, unpruned_jobs, with_r, n + 1)
    gc.unfreeze()
    return {"nodes": nodes, "build_s": build, "jobs": n, "rate": rate,
            "unpruned_jobs": n2, "unpruned_rate": n2 / dt2 if dt2 else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, action="append",
                    help="cluster size (repeatable; default 1000 and 10000)")
    ap.add_argument("--jobs", type=int, default=20000, help="jobs to allocate per run")
    ap.add_argument("--unpruned-jobs", type=int, default=500,
                    help="jobs timed without pruning (slow: keep small)")
    ap.add_argument("--policy", default="first")
    ap.add_argument("--with-r", action="store_true", help="also write R for every allocation")
    args = ap.parse_args(argv)
    sizes = args.nodes or [1000, 10000]
    targets = {1000: 1000, 10000: 300}
    print(f"{'nodes':>6} {'build s':>8} {'jobs':>6} {'alloc/s (pruned)':>17}"
          f" {'alloc/s (no pruning)':>21} {'target':>7}")
    ok = True
    for nodes in sizes:
        r = bench(nodes, args.jobs, args.policy, args.with_r, args.unpruned_jobs)
        tgt = targets.get(nodes)
        if tgt and r["rate"] < tgt:
            ok = False
        print(f"{nodes:>6} {r['build_s']:>8.1f} {r['jobs']:>6} {r['rate']:>17.0f}"
              f" {r['unpruned_rate']:>21.0f} {tgt or '':>7}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
