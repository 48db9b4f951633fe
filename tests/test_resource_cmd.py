"""flux resource list/info/status/R/drain/undrain/add/remove on a modeled cluster, with
each scheduler (the graph scheduler and the simple one)."""

from __future__ import annotations

import json

import pytest

LONG = "--setattr=system.exec.test.run_duration=1h"
CLUSTER = ('resource.config=[{hosts="node[0-7]", cores="0-3", gpus="0-1"},'
           '{hosts="node[0-1]", properties=["big"]}]')


@pytest.fixture(params=["graph", "simple"], scope="module")
def inst(request):
    from conftest import Instance

    inst = Instance(1, conf=[CLUSTER], setattrs=[f"sched.module={request.param}"])
    yield inst
    inst.stop()


def lines(r) -> list[str]:
    assert r.returncode == 0, r.stderr
    return [ln.rstrip() for ln in r.stdout.splitlines()]


def run_job(inst, *args) -> str:
    jobid = inst.flux("submit", LONG, *args, "true", check=True).stdout.strip()
    inst.flux("job", "wait-event", "-t", "30", jobid, "start", check=True)
    return jobid


def cancel(inst, jobid) -> None:
    inst.flux("cancel", jobid, check=True)
    inst.flux("job", "wait-event", "-t", "30", jobid, "clean", check=True)


def test_list_info_status_R(inst):
    assert lines(inst.flux("resource", "list")) == [
        "     STATE PROPERTIES NNODES   NCORES    NGPUS NODELIST",
        "      free big             2        8        4 node[0-1]",
        "      free                 6       24       12 node[2-7]",
        " allocated                 0        0        0",
        "      down                 0        0        0"]
    assert lines(inst.flux("resource", "info")) == ["8 Nodes, 32 Cores, 16 GPUs"]
    assert lines(inst.flux("resource", "status")) == [
        "     STATE UP NNODES NODELIST", "     avail  ✔      8 node[0-7]"]
    R = json.loads(inst.flux("resource", "R", check=True).stdout)
    assert R["execution"]["nodelist"] == ["node[0-7]"]
    assert R["execution"]["properties"] == {"big": "0-1"}
    assert lines(inst.flux("resource", "list", "-n", "-s", "up", "-o", "{nnodes} {rlist}")) == [
        "8 rank[0-7]/core[0-3],gpu[0-1]"]
    assert lines(inst.flux("resource", "list", "-n", "-s", "up", "-o", "{properties}:{ranks}")) == [
        "big:0-1", ":2-7"]
    assert lines(inst.flux("resource", "info", "-i", "node[6-7]")) == ["2 Nodes, 8 Cores, 4 GPUs"]
    r = inst.flux("resource", "list", "-s", "bogus")
    assert r.returncode == 1 and "invalid resource state 'bogus'" in r.stderr


def test_allocated_jobs_show(inst):
    jobid = run_job(inst, "-N2", "-n2", "-c2")
    try:
        out = lines(inst.flux("resource", "list", "-n", "-s", "allocated", "-o", "{state} {nnodes} {ncores}"))
        assert out == ["allocated 2 4"]
        assert lines(inst.flux("resource", "info", "-s", "free")) == ["8 Nodes, 28 Cores, 16 GPUs"]
    finally:
        cancel(inst, jobid)


def host_of(inst, jobid) -> str:
    R = json.loads(inst.flux("job", "info", jobid, "R", check=True).stdout)
    return R["execution"]["nodelist"][0]


def others(host: str, n: int) -> list[str]:
    return [f"node{i}" for i in range(8) if f"node{i}" != host][:n]


def test_drain_undrain_with_a_running_job(inst):
    jobid = run_job(inst, "-N1", "-n1")
    busy = host_of(inst, jobid)
    idle1, idle2 = others(busy, 2)
    try:
        assert inst.flux("resource", "drain", f"{busy},{idle1}", "bad", "fan").returncode == 0
        out = lines(inst.flux("resource", "status"))
        assert f"  draining  ✔      1 {busy}" in out and f"   drained  ✔      1 {idle1}" in out
        drain = lines(inst.flux("resource", "drain"))
        assert drain[0].split() == ["TIME", "STATE", "REASON", "NODELIST"]
        assert any("draining" in ln and "bad fan" in ln and ln.endswith(busy) for ln in drain)
        # already drained: an error unless forced or updating
        r = inst.flux("resource", "drain", idle1, "other")
        assert r.returncode == 1 and f"{idle1} already drained" in r.stderr and "--force" in r.stderr
        assert inst.flux("resource", "drain", "-f", idle1, "new reason").returncode == 0
        assert inst.flux("resource", "drain", "-u", f"{idle1},{idle2}", "upd").returncode == 0
        out = lines(inst.flux("resource", "drain", "-n", "-o", "{state}|{reason}|{nodelist}"))
        assert sorted(out) == sorted([f"drained|new reason|{idle1}", f"drained|upd|{idle2}",
                                      f"draining|bad fan|{busy}"])
        # the running job is untouched; drained nodes get no new work
        assert inst.flux("jobs", "-no", "{state}", jobid).stdout.strip() == "RUN"
        down = lines(inst.flux("resource", "list", "-n", "-s", "down", "-o", "{nnodes}"))
        assert down == ["3"]
        pending = inst.flux("submit", LONG, "-N6", "-n6", "true", check=True).stdout.strip()
        r = inst.flux("job", "wait-event", "-t", "0.5", pending, "alloc")
        assert r.returncode != 0  # 5 nodes are up: it waits
        assert inst.flux("resource", "undrain", f"{busy},{idle1},{idle2}").returncode == 0
        inst.flux("job", "wait-event", "-t", "30", pending, "start", check=True)
        cancel(inst, pending)
        r = inst.flux("resource", "undrain", busy)
        assert r.returncode == 1 and "not drained" in r.stderr
        r = inst.flux("resource", "drain", "nosuch7")
        assert r.returncode == 1 and "unknown host nosuch7" in r.stderr
    finally:
        cancel(inst, jobid)


def test_add_and_remove(inst):
    jobid = run_job(inst, "-N1", "-n1")
    busy = host_of(inst, jobid)
    idle1, idle2 = others(busy, 2)
    try:
        r = inst.flux("resource", "remove", f"{busy},{idle1}")
        assert r.returncode == 1 and f"cannot remove {busy}: running jobs hold resources" in r.stderr
        assert lines(inst.flux("resource", "info")) == ["8 Nodes, 32 Cores, 16 GPUs"]  # nothing removed
        assert lines(inst.flux("resource", "status", "-n")) == ["     avail  ✔      8 node[0-7]"]
        assert inst.flux("resource", "remove", f"{idle1},{idle2}").returncode == 0
        assert lines(inst.flux("resource", "info")) == ["6 Nodes, 24 Cores, 12 GPUs"]
        r = inst.flux("submit", "-N8", "true")
        assert r.returncode == 1 and "unsatisfiable" in r.stderr
        out = inst.flux("resource", "add", "--hosts=fat[0-1]", "--cores=0-63", "--gpus=0-7",
                        "--properties=fat")
        assert out.returncode == 0 and out.stdout.strip() == "added fat[0-1]", out.stderr
        assert lines(inst.flux("resource", "info")) == ["8 Nodes, 152 Cores, 28 GPUs"]
        big = run_job(inst, "-N1", "-n1", "-c64")
        assert host_of(inst, big).startswith("fat")
        cancel(inst, big)
        r = inst.flux("resource", "add", "--hosts=fat1", "--cores=0-3")
        assert r.returncode == 1 and "fat1 already in the instance" in r.stderr
        r = inst.flux("resource", "add", "-", input="not json")
        assert r.returncode == 1 and "not JSON" in r.stderr
        assert inst.flux("jobs", "-no", "{state}", jobid).stdout.strip() == "RUN"
    finally:
        cancel(inst, jobid)
    # put the module's instance back as it was
    assert inst.flux("resource", "remove", "fat[0-1]").returncode == 0
    r = inst.flux("resource", "add", "--hosts", f"{idle1},{idle2}", "--cores=0-3", "--gpus=0-1")
    assert r.returncode == 0, r.stderr
