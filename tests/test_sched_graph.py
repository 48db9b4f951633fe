"""The graph scheduler in real instances on modeled clusters: co-scheduling, backfill,
R with JGF, feasibility at submit, policies from config and changed at run time."""

from __future__ import annotations

import json
import time

import pytest

TEST = "--setattr=system.exec.test.run_duration="


def cluster(nodes: int, cores: int = 36, gpus: int = 4) -> str:
    g = f', gpus="0-{gpus - 1}"' if gpus else ""
    return f'resource.config=[{{hosts="node[0-{nodes - 1}]", cores="0-{cores - 1}"{g}}}]'


def graph_instance(make_instance, nodes, cores=36, gpus=4, setattrs=(), conf=()):
    return make_instance(1, conf=[cluster(nodes, cores, gpus), *conf],
                         setattrs=["sched.module=graph", *setattrs])


def submit(inst, *args, run="1h") -> str:
    return inst.flux("submit", f"{TEST}{run}", *args, "true", check=True).stdout.strip()


def wait(inst, jobid, event, timeout=30):
    return inst.flux("job", "wait-event", "-t", str(timeout), jobid, event)


def R_of(inst, jobid) -> dict:
    return json.loads(inst.flux("job", "info", jobid, "R", check=True).stdout)


def test_mummi_co_scheduling(make_instance):
    """On each node one GPU job and several CPU jobs at once."""
    inst = graph_instance(make_instance, 4)
    gpu_jobs = [submit(inst, "-n1", "-c4", "-g4") for _ in range(4)]
    cpu_jobs = [submit(inst, "-n1", "-c8") for _ in range(16)]
    for j in gpu_jobs + cpu_jobs:
        assert wait(inst, j, "start").returncode == 0
    per_node: dict[str, list[str]] = {}
    for j in gpu_jobs + cpu_jobs:
        R = R_of(inst, j)
        (host,) = R["execution"]["nodelist"]
        per_node.setdefault(host, []).append("gpu" if j in gpu_jobs else "cpu")
        if j in gpu_jobs:
            assert R["execution"]["R_lite"][0]["children"] == {"core": R["execution"]["R_lite"][0]
                                                               ["children"]["core"], "gpu": "0-3"}
    assert sorted(per_node) == ["node0", "node1", "node2", "node3"]
    for kinds in per_node.values():
        assert sorted(kinds) == ["cpu"] * 4 + ["gpu"]
    r = inst.flux("jobs", "-no", "{state}", *gpu_jobs, *cpu_jobs, check=True)
    assert set(r.stdout.split()) == {"RUN"}  # all twenty at once
    assert inst.flux("resource", "info", "-s", "free").stdout.strip() == "0 Nodes, 0 Cores, 0 GPUs"
    inst.flux("cancel", "--all", check=True)
    inst.flux("queue", "drain", check=True)


def test_alloc_R_has_jgf_and_times(make_instance):
    inst = graph_instance(make_instance, 2, cores=4, gpus=0)
    jobid = submit(inst, "-N1", "-n2", "-t", "5m")
    assert wait(inst, jobid, "start").returncode == 0
    R = R_of(inst, jobid)
    ex = R["execution"]
    assert ex["nodelist"] == ["node0"] and ex["R_lite"] == [{"rank": "0", "children": {"core": "0-1"}}]
    assert ex["expiration"] - ex["starttime"] == pytest.approx(300)
    assert R["scheduling"]["writer"] == "fluxion:jgf"
    types = sorted(n["metadata"]["type"] for n in R["scheduling"]["graph"]["nodes"])
    assert types.count("core") == 2 and "node" in types
    summary = inst.flux("jobs", "-no", "{annotations.sched.resource_summary}", jobid, check=True)
    assert summary.stdout.strip() == "rank0/core[0-1]"
    # match-format=rv1_nosched leaves the JGF out
    inst2 = graph_instance(make_instance, 2, cores=4, gpus=0, setattrs=["sched-graph.match-format=rv1_nosched"])
    j2 = submit(inst2, "-n1")
    assert wait(inst2, j2, "start").returncode == 0
    assert "scheduling" not in R_of(inst2, j2)


def test_unsatisfiable_rejected_at_submit_with_reason(make_instance):
    inst = graph_instance(make_instance, 4, cores=8, gpus=2)
    r = inst.flux("submit", "-N5", "true")
    assert r.returncode == 1
    assert "unsatisfiable request: requested 5 nodes but the resource graph has only 4" in r.stderr
    r = inst.flux("submit", "-n1", "-g3", "true")
    assert r.returncode == 1 and "unsatisfiable request" in r.stderr and "gpu" in r.stderr
    r = inst.flux("submit", "-n1", "-c9", "true")
    assert r.returncode == 1 and "unsatisfiable request" in r.stderr
    r = inst.flux("submit", "--requires=host:nosuch", "true")
    assert r.returncode == 1 and "no node matches the job's constraints" in r.stderr
    # drained nodes still count: the job waits instead of being rejected
    inst.flux("resource", "drain", "node[0-3]", "maintenance", check=True)
    jobid = submit(inst, "-N4", run="1s")
    assert wait(inst, jobid, "alloc", timeout=0.5).returncode != 0
    inst.flux("resource", "undrain", "node[0-3]", check=True)
    assert wait(inst, jobid, "clean").returncode == 0
    # a constraint picks the node
    j = submit(inst, "--requires=host:node2", "-n1")
    assert wait(inst, j, "start").returncode == 0
    assert R_of(inst, j)["execution"]["nodelist"] == ["node2"]


def test_backfill_easy_vs_fcfs(make_instance):
    """4 one-core nodes. A running job holds 2 until +100s; A needs 3 nodes (waits, reserved
    at +100s under easy), B all 4, C one node for 250s: easy starts C at once, fcfs not."""
    out = {}
    for policy in ("fcfs", "easy", "conservative"):
        inst = graph_instance(make_instance, 4, cores=1, gpus=0,
                              setattrs=[f"sched-graph.queue-policy={policy}"])
        run = submit(inst, "-N2", "-t", "100s")
        assert wait(inst, run, "start").returncode == 0
        a = submit(inst, "-N3", "-t", "100s")
        b = submit(inst, "-N4", "-t", "10s")
        c = submit(inst, "-N1", "-t", "250s")
        for j in (a, b, c):
            assert wait(inst, j, "priority").returncode == 0
        started = wait(inst, c, "start", timeout=3).returncode == 0
        est = inst.flux("jobs", "-no", "{annotations.sched.t_estimate}", a, check=True).stdout.strip()
        out[policy] = (started, est)
        inst.flux("cancel", "--all", check=True)
        inst.stop()
    assert out["fcfs"][0] is False and out["fcfs"][1] == ""
    assert out["easy"][0] is True
    assert out["conservative"][0] is False  # C would delay B, which is reserved too
    now = time.time()
    for policy in ("easy", "conservative"):
        assert now - 30 < float(out[policy][1]) < now + 100  # A's reservation: when the first job ends


def test_policy_from_config_and_switch(make_instance):
    inst = graph_instance(make_instance, 2, cores=2, gpus=0,
                          conf=['sched-graph.queue-policy="hybrid"',
                                'sched-graph.queue-params={queue-depth=8, reservation-depth=2}'])
    r = inst.flux("queue", "policy", check=True)
    assert r.stdout.splitlines()[0] == "Queue policy: hybrid (queue-depth=8,reservation-depth=2)"
    r = inst.flux("queue", "status", "-v", check=True)
    assert "Queue policy: hybrid (queue-depth=8,reservation-depth=2)" in r.stdout
    # idle: switch, with parameters
    r = inst.flux("queue", "policy", "easy", "-p", "queue-depth=64", check=True)
    assert r.stdout.splitlines()[0] == "Queue policy: easy (queue-depth=64)"
    r = inst.flux("queue", "policy", "eazy")
    assert r.returncode == 1
    assert "unknown queue policy 'eazy' (installed: conservative, easy, fcfs, hybrid" in r.stderr
    r = inst.flux("queue", "policy", "fcfs", "-p", "reservation-depth=2")
    assert r.returncode == 1 and "has no parameter 'reservation-depth'" in r.stderr
    # not idle: a job waits for resources
    hog = submit(inst, "-N2", "-x")
    assert wait(inst, hog, "start").returncode == 0
    waiting = submit(inst, "-n1")
    assert wait(inst, waiting, "priority").returncode == 0
    r = inst.flux("queue", "policy", "conservative")
    assert r.returncode == 1 and "not idle: 1 jobs are pending" in r.stderr
    assert inst.flux("queue", "policy", check=True).stdout.startswith("Queue policy: easy")
    inst.flux("cancel", waiting, check=True)
    assert wait(inst, waiting, "clean").returncode == 0
    r = inst.flux("queue", "policy", "conservative", check=True)  # running jobs do not matter
    assert r.stdout.startswith("Queue policy: conservative")
    inst.flux("cancel", hog, check=True)


def test_bad_policy_in_config_stops_scheduling_until_fixed(make_instance):
    inst = graph_instance(make_instance, 2, cores=2, gpus=0, setattrs=["sched-graph.queue-policy=eazy"])
    jobid = submit(inst, "-n1", run="0.01s")
    r = inst.flux("queue", "status", "-v", check=True)
    assert "Scheduling is stopped" in r.stdout
    assert "Scheduler error: sched-graph: unknown queue policy 'eazy' (installed: " in r.stdout
    dmesg = inst.flux("dmesg", check=True).stdout
    assert "unknown queue policy 'eazy'" in dmesg
    assert wait(inst, jobid, "alloc", timeout=0.3).returncode != 0
    inst.flux("queue", "policy", "easy", check=True)
    assert wait(inst, jobid, "clean").returncode == 0
    r = inst.flux("queue", "status", check=True)
    assert r.stdout == "Job submission is enabled\nScheduling is started\n"
    # a config key the scheduler does not know is named too
    inst2 = graph_instance(make_instance, 1, cores=1, gpus=0, conf=['sched-graph.queue-polcy="easy"'])
    r = inst2.flux("queue", "policy", check=True)
    assert "unknown key 'queue-polcy'" in r.stdout


def test_simple_is_still_selectable(make_instance):
    inst = make_instance(1, conf=[cluster(2, 2, 0)], setattrs=["sched.module=simple"])
    assert inst.flux("getattr", "sched.module", check=True).stdout.strip() == "simple"
    jobid = submit(inst, "-n1", run="0.01s")
    assert wait(inst, jobid, "clean").returncode == 0
    r = inst.flux("queue", "policy")
    assert r.returncode == 1 and "the scheduler 'simple' has no queue policies" in r.stderr


def test_live_changes_leave_running_jobs_alone(make_instance):
    inst = graph_instance(make_instance, 4, cores=4, gpus=0, setattrs=["sched-graph.queue-policy=easy"])
    jobs = [submit(inst, "-N1", "-n4") for _ in range(2)]  # node0, node1
    for j in jobs:
        assert wait(inst, j, "start").returncode == 0
    hosts = sorted(R_of(inst, j)["execution"]["nodelist"][0] for j in jobs)
    assert hosts == ["node0", "node1"]
    inst.flux("resource", "drain", "node[0-2]", "swap", check=True)
    r = inst.flux("resource", "remove", "node0")
    assert r.returncode == 1 and "running jobs hold resources" in r.stderr
    inst.flux("resource", "remove", "node2", check=True)
    inst.flux("resource", "add", "--hosts=node[8-9]", "--cores=0-7", check=True)
    big = submit(inst, "-N2", "-n2", "-c8")  # only the new nodes fit it
    assert wait(inst, big, "start").returncode == 0
    assert R_of(inst, big)["execution"]["nodelist"] == ["node[8-9]"]
    r = inst.flux("jobs", "-no", "{state}", *jobs, check=True)
    assert r.stdout.split() == ["RUN", "RUN"]
    assert sorted(R_of(inst, j)["execution"]["nodelist"][0] for j in jobs) == hosts
    stats = inst.handle().rpc("sched.stats").get()
    assert stats["running"] == 3 and stats["pending"] == 0
    assert stats["graph"]["types"]["node"]["total"] == 5  # 4 - 1 removed + 2 added
    inst.flux("cancel", "--all", check=True)
    inst.flux("queue", "drain", check=True)
    inst.flux("resource", "remove", "node0", check=True)  # free now


def test_named_queues_are_scheduled_apart(make_instance):
    """fcfs per queue: a blocked job in batch does not hold up debug."""
    inst = graph_instance(make_instance, 2, cores=2, gpus=0, conf=["queues.batch={}", "queues.debug={}"])
    run = submit(inst, "-q", "batch", "-N1", "-x")
    assert wait(inst, run, "start").returncode == 0
    blocked = submit(inst, "-q", "batch", "-N2")
    behind = submit(inst, "-q", "batch", "-N1")
    debug = submit(inst, "-q", "debug", "-N1")
    assert wait(inst, debug, "start").returncode == 0
    assert wait(inst, behind, "alloc", timeout=0.3).returncode != 0  # fcfs within batch
    stats = inst.handle().rpc("sched.stats").get()
    assert stats["queues"] == {"batch": 2, "debug": 0}
    inst.flux("cancel", run, debug, check=True)
    assert wait(inst, blocked, "start").returncode == 0
    inst.flux("cancel", "--all", check=True)


def test_child_R_jgf_follows_the_renumbered_ranks():
    """A child's R is renumbered from 0 but its JGF keeps the parent's ranks: the
    scheduler matches them by host name, so the child's graph has the child's ranks."""
    from flux.core.resource.graph import Request, ResourceGraph
    from flux.core.resource.parent import rerank
    from flux.core.resource.rv1 import ResourceSet
    from flux_sched_graph.rfmt import rank_jgf

    parent = ResourceGraph.from_rv1(ResourceSet.from_config(
        [{"hosts": "node[0-3]", "cores": "0-3", "gpus": "0-1"}]).to_dict())
    assert parent.allocate(Request.simple(2, 4, 2, 2, True), 1, 0.0) is not None  # node0-1
    alloc = parent.allocate(Request.simple(2, 2, 1, 2), 2, 0.0)
    full = alloc.to_rv1()
    # R renumbered from 0 with the JGF left as the parent wrote it (ranks 2-3)
    R = rerank({k: v for k, v in full.items() if k != "scheduling"})
    R["scheduling"] = full["scheduling"]
    assert R["execution"]["nodelist"] == ["node[2-3]"]
    assert R["execution"]["R_lite"][0]["rank"] == "0-1"
    child_R = rank_jgf(R, ResourceSet.from_dict(R))
    child = ResourceGraph.from_rv1(child_R)
    assert child.ranks() == [0, 1]
    a = child.allocate(Request.simple(2, 2, 1, 2), 7, 0.0)
    assert a is not None and a.ranks() == [0, 1]
    assert a.to_rv1()["execution"]["nodelist"] == ["node[2-3]"]
    assert R["scheduling"]["graph"] != child_R["scheduling"]["graph"]  # R itself untouched
