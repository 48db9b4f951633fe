"""Queue policies (fcfs, easy, conservative, hybrid) driving the real resource graph
through the scheduler's JobQueue, in simulated time (no broker)."""

from __future__ import annotations

import pytest
from flux.core.resource.graph import Request, ResourceGraph
from flux.core.resource.rv1 import ResourceSet
from flux_sched_graph.jobqueue import JobQueue, PendingJob
from flux_sched_graph.policy import load_queue_policy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def graph(nodes: int, cores: int = 1, gpus: int = 0) -> ResourceGraph:
    entry = {"hosts": f"n[0-{nodes - 1}]", "cores": f"0-{cores - 1}"}
    if gpus:
        entry["gpus"] = f"0-{gpus - 1}"
    return ResourceGraph.from_rv1(ResourceSet.from_config([entry]).to_dict())


def job(jobid: int, nnodes: int, duration: float, priority: int = 16) -> PendingJob:
    return PendingJob(jobid, priority, float(jobid), Request.simple(nnodes, 1, 0, nnodes, True, duration),
                      duration)


def scenario(policy: str, **params):
    """4 one-core nodes; job 1 holds 2 nodes until t=100. Queue: A (3 nodes, 100 s),
    B (4 nodes, 10 s), C (1 node, 250 s). A cannot start before 100; C fits on the
    node A does not need, but runs past 200, where B would go if it were reserved."""
    g = graph(4)
    assert g.allocate(Request.simple(2, 1, 0, 2, True, 100), 1, 0.0, 100) is not None
    q = JobQueue(g, load_queue_policy(policy, params))
    for j in (job(10, 3, 100), job(11, 4, 10), job(12, 1, 250)):
        q.add(j)
    return g, q, q.run(0.0)


def started(res) -> list[int]:
    return [j.id for j, _a in res.started]


def reserved(res) -> dict[int, float]:
    return {j.id: a.starttime for j, a in res.reserved}


def test_fcfs_blocks_behind_the_head():
    g, q, res = scenario("fcfs")
    assert started(res) == [] and reserved(res) == {}
    assert [j.id for j in q] == [10, 11, 12]
    assert q.idle  # nothing more to do until something changes
    q.add(job(13, 1, 1))  # behind a blocked head: no match is even tried
    m = q.matches
    assert started(q.run(1.0)) == [] and q.matches == m
    g.free(1)
    q.changed()
    res = q.run(100.0)
    assert started(res) == [10]  # then B (4 nodes) blocks again
    g.check()


def test_easy_backfills_without_delaying_the_head():
    g, q, res = scenario("easy")
    assert reserved(res) == {10: 100.0}  # only the first blocked job
    assert started(res) == [12]  # C runs on the node A leaves free
    assert [j.id for j in q] == [10, 11]
    assert q.get(10).reserved is not None and q.get(11).reserved is None
    # a job that would delay A (2 nodes past t=100) does not start
    q.add(job(13, 2, 150))
    assert started(q.run(5.0)) == []
    g.free(1)
    q.changed()
    res = q.run(100.0)
    assert started(res) == [10]
    g.check()


def test_conservative_delays_nobody():
    g, q, res = scenario("conservative")
    assert reserved(res) == {10: 100.0, 11: 200.0, 12: 210.0}
    assert started(res) == []  # C would run into B's reservation at 200
    g.check()


@pytest.mark.parametrize("depth,like", [(1, "easy"), (2, "conservative")])
def test_hybrid_reservation_depth(depth, like):
    _g, _q, res = scenario("hybrid", **{"reservation-depth": depth})
    _g2, _q2, ref = scenario(like)
    assert started(res) == started(ref)
    assert reserved(res) == {k: v for k, v in reserved(ref).items() if k in (10, 11)}


def test_queue_depth_limits_a_pass():
    g = graph(8)
    q = JobQueue(g, load_queue_policy("fcfs", {"queue-depth": 3}))
    for i in range(8):
        q.add(job(100 + i, 1, 10))
    res = q.run(0.0)
    assert started(res) == [100, 101, 102] and res.more
    res = q.run(0.0)
    assert started(res) == [103, 104, 105] and res.more
    assert len(q.run(0.0).started) == 2
    # easy: after queue-depth blocked jobs the pass ends, deeper jobs are not looked at
    g = graph(2)
    assert g.allocate(Request.simple(2, 1, 0, 2, True, 100), 1, 0.0, 100) is not None
    q = JobQueue(g, load_queue_policy("easy", {"queue-depth": 2}))
    for i in range(5):
        q.add(job(200 + i, 2, 10))
    m = q.matches
    q.run(0.0)
    assert q.matches - m == 3  # 2 allocation attempts and one reservation
    assert q.idle


def test_priority_and_cancel_restart_the_pass():
    g, q, res = scenario("easy")
    assert reserved(res) == {10: 100.0}
    # B jumps ahead of A: it gets the reservation (after C, started at 0), A loses it
    assert q.reprioritize(11, 100)
    res = q.run(1.0)
    assert reserved(res) == {11: 250.0} and [j.id for j in res.unreserved] == [10]
    # cancel the reserved job: A is reserved again
    assert q.remove(11).id == 11
    res = q.run(2.0)
    assert reserved(res) == {10: 100.0}
    assert q.remove(999) is None
    g.check()


def test_policy_names_and_parameters():
    with pytest.raises(LookupError, match=r"unknown queue policy 'eazy' \(installed: "
                                          r"conservative, easy, fcfs, hybrid"):
        load_queue_policy("eazy")
    with pytest.raises(ValueError, match="queue policy 'easy' has no parameter 'reservation-depth'"
                                         r" \(it takes: queue-depth\)"):
        load_queue_policy("easy", {"reservation-depth": 3})
    with pytest.raises(ValueError, match="queue-depth must be at least 1"):
        load_queue_policy("fcfs", {"queue-depth": 0})
    with pytest.raises(ValueError, match="queue-depth must be a positive integer or 'unlimited'"):
        load_queue_policy("fcfs", {"queue-depth": "lots"})
    p = load_queue_policy("hybrid", {"queue-depth": "unlimited", "reservation-depth": "8"})
    assert p.describe() == "hybrid (queue-depth=unlimited,reservation-depth=8)"
    assert load_queue_policy("conservative").params == {"queue-depth": 32, "max-reservation-depth": 100000}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(["fcfs", "easy", "conservative", "hybrid"]),
       ops=st.lists(st.tuples(st.sampled_from(["submit", "submit", "finish", "cancel", "prio"]),
                              st.integers(1, 6), st.integers(1, 50)), max_size=40))
def test_random_sequences_keep_the_planner_consistent(policy, ops):
    g = graph(6, cores=4, gpus=1)
    q = JobQueue(g, load_queue_policy(policy, {"queue-depth": 4}))
    running: dict[int, float] = {}
    now, nextid = 0.0, 1
    for op, n, d in ops:
        now += 1.0
        if op == "submit":
            req = Request.simple(n, 1 + d % 4, d % 2, 0 if d % 3 else min(n, 6), d % 5 == 0, d)
            q.add(PendingJob(nextid, d % 3, now, req, float(d)))
            nextid += 1
        elif op == "finish" and running:
            jobid = sorted(running)[n % len(running)]
            del running[jobid]
            g.free(jobid)
            q.changed()
        elif op == "cancel" and len(q):
            q.remove(list(q)[n % len(q)].id)
        elif op == "prio" and len(q):
            q.reprioritize(list(q)[n % len(q)].id, d)
        while True:
            res = q.run(now)
            for j, a in res.started:
                assert j.id not in running and q.get(j.id) is None and not a.reserved
                running[j.id] = now
            if not res.more:
                break
        g.check()
        held = {jid for jid, a in g.jobs.items() if not a.reserved}
        assert held == set(running)
        assert all(g.jobs[j.id].reserved for j in q if j.reserved is not None)
    for jobid in list(running):
        g.free(jobid)
    g.unreserve_all()
    g.check()
    assert not g.jobs
    free = g.stats()["types"]
    assert all(v["free"] == v["total"] for v in free.values())


def test_a_shape_that_failed_is_not_matched_again_in_the_pass():
    g = graph(2)
    assert g.allocate(Request.simple(2, 1, 0, 2, True, 100), 1, 0.0, 100) is not None
    q = JobQueue(g, load_queue_policy("easy", {"queue-depth": 10}))
    for i in range(6):
        j = job(10 + i, 2, 50 + i)
        j.shape = "2 nodes"
        q.add(j)
    res = q.run(0.0)
    assert reserved(res) == {10: 100.0} and started(res) == []
    assert q.matches == 2  # job 10: allocate + reserve; 11-15 (as long or longer): none
    short = job(20, 2, 10)  # same shape, shorter: it is tried
    short.shape = "2 nodes"
    q.add(short)
    q.run(1.0)
    assert q.matches == 3
    g.free(1)
    q.changed()  # a restart forgets what failed
    assert started(q.run(100.0)) == [10]


def test_jobs_without_a_time_limit_are_matched():
    g = graph(2)
    q = JobQueue(g, load_queue_policy("fcfs"))
    for i in range(3):
        j = job(30 + i, 1, 0)  # no limit
        j.shape = "1 node"
        q.add(j)
    assert started(q.run(0.0)) == [30, 31] and [j.id for j in q] == [32]
    assert g.jobs[30].expiration == 0.0
