"""Hierarchical ensembles: jobs submitted at the root run in child instances and are
followed from the root (plugins/ensemble).

Trees here are small: a one-broker root modeling one 8-core node, split by cores
(depth 2: `2`, two children of 4 cores; depth 3: `2,2`, four grandchildren of 2
cores), and a two-broker root with fake host names split by node (`node`).
"""

from __future__ import annotations

import json
import os
import select
import time

import pytest
from conftest import Instance

pytestmark = pytest.mark.slow

NODE8 = 'resource.config=[{hosts="node0", cores="0-7"}]'
TEST_EXEC = "-Ssystem.exec.test.run_duration=0.01s"


def status(inst, uri: str | None = None) -> dict:
    env = {"FLUX_URI": uri} if uri else None
    r = inst.flux("ensemble", "status", "--wait", "--json", env=env, timeout=120)
    return json.loads(r.stdout)


def leaves(tree: dict) -> list[dict]:
    kids = tree.get("children") or []
    return [tree] if not kids else [x for k in kids for x in leaves(k)]


def all_pids(tree: dict) -> list[int]:
    return [tree["pid"]] + [p for k in tree.get("children") or [] for p in all_pids(k)]


def wait_gone(pids: list[int], timeout: float = 60) -> list[int]:
    """Wait (on pidfds, not by polling) until these processes have exited; return
    those still alive after `timeout`."""
    fds = {}
    for p in pids:
        try:
            fds[os.pidfd_open(p)] = p
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(list(fds), [], [], left)
        for fd in ready:
            os.close(fd)
            del fds[fd]
    alive = list(fds.values())
    for fd in fds:
        os.close(fd)
    return alive


def jobs_at(inst, uri: str | None, *args: str) -> list[dict]:
    env = {"FLUX_URI": uri} if uri else None
    fmt = "{id.f58} {name} {status_abbrev} {returncode}"
    r = inst.flux("jobs", "-a", "-n", "-o", fmt, *args, env=env, check=True)
    out = []
    for line in r.stdout.splitlines():
        jid, name, st, rc = (line.split() + [""] * 4)[:4]
        out.append({"id": jid, "name": name, "status": st, "returncode": rc})
    return out


def submit(inst, *args: str) -> str:
    return inst.flux("submit", *args, check=True).stdout.strip()


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def depth2():
    inst = Instance(1, conf=[NODE8, 'ensemble.shape="2"'])
    st = status(inst)
    assert st["ready"] and not st["error"], st
    yield inst
    pids = all_pids(st["tree"])
    inst.stop()
    assert wait_gone(pids) == [], "brokers of the tree still running after shutdown"


@pytest.fixture(scope="module")
def depth3():
    inst = Instance(1, conf=[NODE8, 'ensemble.shape="2,2"', 'ensemble.policy="least-loaded"'])
    st = status(inst)
    assert st["ready"] and not st["error"], st
    yield inst
    pids = all_pids(st["tree"])
    inst.stop()
    assert wait_gone(pids) == [], "brokers of the tree still running after shutdown"


# ------------------------------------------------------------------- depth 2
def test_depth2_tree(depth2):
    st = status(depth2)
    assert st["shape"] == "2" and st["role"] == "parent"
    assert [c["state"] for c in st["children"]] == ["joined", "joined"]
    assert [c["resources"] for c in st["children"]] == ["4 cores", "4 cores"]
    # the children are ordinary jobs of the root
    kids = [j for j in jobs_at(depth2, None) if j["name"].startswith("ensemble-")]
    assert sorted(j["name"] for j in kids) == ["ensemble-0", "ensemble-1"]
    assert all(j["status"] == "R" for j in kids)
    for leaf in leaves(st["tree"]):
        assert status(depth2, leaf["uri"])["role"] == "leaf"


def test_depth2_test_exec_jobs_complete_and_are_followed_from_root(depth2):
    st0 = status(depth2)
    before = {c["index"]: c["done"] for c in st0["children"]}
    leaves_before = [status(depth2, leaf["uri"])["ran"] for leaf in leaves(st0["tree"])]
    ids = depth2.flux("submit", "--cc=1-40", TEST_EXEC, "--job-name=te2", "true",
                      check=True).stdout.split()
    assert len(ids) == 40
    depth2.flux("ensemble", "drain", check=True, timeout=120)
    mine = [j for j in jobs_at(depth2, None, "--name=te2")]
    assert len(mine) == 40
    assert {j["status"] for j in mine} == {"CD"}
    st = status(depth2)
    # round robin: both children ran half
    assert [c["done"] - before[c["index"]] for c in st["children"]] == [20, 20]
    assert all(c["outstanding"] == 0 for c in st["children"])
    # the root's copy has the events of the job that ran below, and its R
    log = depth2.flux("job", "eventlog", ids[0], check=True).stdout
    names = [ln.split()[1] for ln in log.splitlines()]
    assert names[:4] == ["submit", "validate", "depend", "priority"]
    assert names[4:] == ["alloc", "start", "finish", "clean"]
    R = json.loads(depth2.flux("job", "info", ids[0], "R", check=True).stdout)
    assert R["execution"]["nodelist"] == ["node0"]
    # the leaves ran them with their scheduler and exec, and keep no record of them
    # (the root's is the record): nothing left active there, no job-manager job
    ran = 0
    for leaf, was in zip(leaves(st["tree"]), leaves_before, strict=True):
        ls = status(depth2, leaf["uri"])
        assert ls["role"] == "leaf" and ls["active"] == []
        ran += ls["ran"] - was
        assert jobs_at(depth2, leaf["uri"], "--name=te2") == []
    assert ran == 40


def test_depth2_output_exit_code_and_wait(depth2):
    jid = submit(depth2, "echo", "hello from a leaf")
    r = depth2.flux("job", "attach", jid, timeout=60)
    assert r.returncode == 0 and r.stdout == "hello from a leaf\n"
    bad = submit(depth2, "--flags=waitable", "sh", "-c", "echo oops >&2; exit 3")
    r = depth2.flux("job", "attach", bad, timeout=60)
    assert r.returncode == 3
    assert "oops" in r.stderr
    r = depth2.flux("job", "wait", bad, timeout=60)
    assert r.returncode != 0 and "exit code 3" in r.stderr
    by_id = {j["id"]: j for j in jobs_at(depth2, None)}
    assert by_id[bad]["status"] == "F" and by_id[bad]["returncode"] == "3"
    assert by_id[jid]["status"] == "CD" and by_id[jid]["returncode"] == "0"
    out = depth2.flux("job", "eventlog", "-p", "output", jid, check=True).stdout
    assert "hello from a leaf" in out


def test_depth2_executor_futures(depth2):
    code = (
        "import sys\n"
        "from flux.job import FluxExecutor, JobspecV1\n"
        "with FluxExecutor() as ex:\n"
        "    ok = ex.submit(JobspecV1.from_command(['true']))\n"
        "    bad = ex.submit(JobspecV1.from_command(['false']))\n"
        "    print(ok.result(timeout=60), bad.result(timeout=60))\n"
    )
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], env=depth2.env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "1"]


def test_depth2_cancel_reaches_the_leaf(depth2):
    jid = submit(depth2, "--job-name=sleeper", "sleep", "300")
    depth2.flux("job", "wait-event", "-t", "60", jid, "start", check=True)
    st = status(depth2)
    running = [(leaf["uri"], j) for leaf in leaves(st["tree"])
               for j in status(depth2, leaf["uri"])["active"] if j["origin"] == jid]
    assert len(running) == 1 and running[0][1]["state"] == "run"
    depth2.flux("cancel", jid, check=True)
    depth2.flux("job", "wait-event", "-t", "60", jid, "clean", check=True)
    mine = {j["id"]: j for j in jobs_at(depth2, None, "--name=sleeper")}
    assert mine[jid]["status"] == "CA"
    # the leaf killed the task (SIGTERM: the finish status the root mirrored) and
    # released its resources before the root's copy ended
    log = depth2.flux("job", "eventlog", jid, check=True).stdout
    fin = [ln for ln in log.splitlines() if ln.split()[1] == "finish"]
    assert len(fin) == 1
    st_ = int(fin[0].split("status=")[1].split()[0])
    assert st_ == 15 or st_ >> 8 == 128 + 15, f"not killed by SIGTERM: {fin[0]}"
    uri, _leafjob = running[0]
    assert status(depth2, uri)["active"] == []


def test_depth2_cancel_before_it_runs(depth2):
    # held at the root (urgency 0): never sent down; cancel ends it here
    jid = submit(depth2, "--urgency=0", "true")
    depth2.flux("cancel", jid, check=True)
    depth2.flux("job", "wait-event", "-t", "30", jid, "clean", check=True)
    log = depth2.flux("job", "eventlog", jid, check=True).stdout
    assert "alloc" not in log and "exception" in log


def test_depth2_job_too_big_for_a_leaf_is_refused_at_submit(depth2):
    # the root measures a job against a leaf (4 cores here), not against itself (8)
    r = depth2.flux("submit", "-n", "1", "-c", "6", TEST_EXEC, "true")
    assert r.returncode != 0
    assert "unsatisfiable request" in r.stderr and "leaf" in r.stderr, r.stderr
    r = depth2.flux("submit", "-n", "2", "-c", "3", TEST_EXEC, "true")
    assert r.returncode != 0 and "6 cores requested" in r.stderr, r.stderr
    # what fits a leaf still goes down and runs
    jid = submit(depth2, "--flags=waitable", "-n", "1", "-c", "4", TEST_EXEC, "true")
    assert depth2.flux("job", "wait", jid, timeout=60).returncode == 0


def test_depth2_kill_signal_reaches_the_leaf(depth2):
    jid = submit(depth2, "--job-name=killme", "sleep", "300")
    depth2.flux("job", "wait-event", "-t", "60", jid, "start", check=True)
    depth2.flux("job", "kill", "-s", "USR1", jid, check=True)
    depth2.flux("job", "wait-event", "-t", "60", jid, "clean", check=True)
    log = depth2.flux("job", "eventlog", jid, check=True).stdout
    fin = [ln for ln in log.splitlines() if ln.split()[1] == "finish"]
    st_ = int(fin[0].split("status=")[1].split()[0])
    assert st_ == 10 or st_ >> 8 == 128 + 10, f"not killed by SIGUSR1: {fin[0]}"
    assert {j["id"]: j for j in jobs_at(depth2, None)}[jid]["status"] == "F"


def test_depth2_cancel_while_the_leaf_waits_for_resources(depth2):
    # each leaf has 4 cores: fill both, then one more 4-core job waits in a leaf's
    # scheduler (its alloc request outstanding there) until it is canceled
    big = ["-n1", "-c4", "--job-name=big"]
    fill = [submit(depth2, *big, "sleep", "300") for _ in range(2)]
    for j in fill:
        depth2.flux("job", "wait-event", "-t", "60", j, "start", check=True)
    queued = submit(depth2, *big, "true")
    st = status(depth2)

    def active(origin):
        return [j for leaf in leaves(st["tree"])
                for j in status(depth2, leaf["uri"])["active"] if j["origin"] == origin]

    # sent down and waiting there (the root's copy has no alloc)
    depth2.flux("job", "wait-event", "-t", "60", queued, "priority", check=True)
    deadline = time.monotonic() + 60
    while not active(queued) and time.monotonic() < deadline:
        depth2.flux("ensemble", "status", "--wait", check=True)  # a round trip, no sleep
    assert [j["state"] for j in active(queued)] == ["alloc"]
    depth2.flux("cancel", queued, check=True)
    depth2.flux("job", "wait-event", "-t", "60", queued, "clean", check=True)
    log = depth2.flux("job", "eventlog", queued, check=True).stdout
    assert "alloc" not in [ln.split()[1] for ln in log.splitlines()]
    assert active(queued) == []
    for j in fill:
        depth2.flux("cancel", j, check=True)
        depth2.flux("job", "wait-event", "-t", "60", j, "clean", check=True)
    # the canceled request left no allocation behind: a 4-core job runs in each leaf
    again = [submit(depth2, *big, TEST_EXEC, "true") for _ in range(2)]
    for j in again:
        depth2.flux("job", "wait-event", "-t", "60", j, "clean", check=True)
    by_id = {j["id"]: j for j in jobs_at(depth2, None)}
    assert by_id[queued]["status"] == "CA"
    assert all(by_id[j]["status"] == "CD" for j in again)


def test_depth2_exception_raised_in_the_leaf_fails_the_job_at_the_root(depth2):
    # the leaf's exec refuses the test run duration: a start exception there
    jid = submit(depth2, "--flags=waitable", "-Ssystem.exec.test.run_duration=soon", "true")
    r = depth2.flux("job", "wait", jid, timeout=60)
    assert r.returncode != 0 and "type=start" in r.stderr, r.stderr
    log = depth2.flux("job", "eventlog", jid, check=True).stdout
    assert "exception" in log and "run_duration" in log
    assert {j["id"]: j for j in jobs_at(depth2, None)}[jid]["status"] == "F"


# ------------------------------------------------------------------- depth 3
def test_depth3_everything_completes_and_cancel(depth3):
    st = status(depth3)
    assert st["shape"] == "2,2"
    assert len(st["tree"]["children"]) == 2
    assert all(len(c["children"]) == 2 for c in st["tree"]["children"])
    ids = depth3.flux("submit", "--cc=1-60", TEST_EXEC, "--job-name=te3", "true",
                      check=True).stdout.split()
    echo = submit(depth3, "echo", "from depth three")
    fail = submit(depth3, "sh", "-c", "exit 7")
    sleeper = submit(depth3, "--job-name=sleeper3", "sleep", "300")
    depth3.flux("job", "wait-event", "-t", "60", sleeper, "start", check=True)
    depth3.flux("cancel", sleeper, check=True)
    depth3.flux("ensemble", "drain", check=True, timeout=120)
    # waiting from the root for jobs that ran in a grandchild: their real results
    waited = submit(depth3, "--flags=waitable", "sh", "-c", "exit 5")
    r = depth3.flux("job", "wait", waited, timeout=60)
    assert r.returncode != 0 and "exit code 5" in r.stderr, r.stderr
    ok = submit(depth3, "--flags=waitable", TEST_EXEC, "true")
    assert depth3.flux("job", "wait", ok, timeout=60).returncode == 0
    assert depth3.flux("job", "status", waited, timeout=60).returncode == 5
    r = depth3.flux("job", "attach", echo, timeout=60)
    assert r.stdout == "from depth three\n"
    assert depth3.flux("job", "attach", fail, timeout=60).returncode == 7
    by_id = {j["id"]: j for j in jobs_at(depth3, None)}
    assert all(by_id[i]["status"] == "CD" for i in ids)
    assert by_id[fail]["status"] == "F" and by_id[fail]["returncode"] == "7"
    assert by_id[sleeper]["status"] == "CA"
    # every grandchild ran some (least loaded spreads them), none is running anything
    total = 0
    for leaf in leaves(st["tree"]):
        ls = status(depth3, leaf["uri"])
        assert ls["ran"] >= 10, "least-loaded left a grandchild (almost) idle"
        total += ls["ran"]
        assert ls["active"] == []
    assert total == 65
    # the middle level passes jobs through: it holds none of them itself
    for mid in st["tree"]["children"]:
        names = {j["name"] for j in jobs_at(depth3, mid["uri"])}
        assert names == {"ensemble-0", "ensemble-1"}


# ----------------------------------------------------- by node, config errors
def test_split_by_node_two_brokers(make_instance):
    inst = make_instance(2, conf=['resource.config=[{hosts="node[0-1]", cores="0-3"}]',
                                  'ensemble.shape="node"'],
                         extra=["--test-hosts=node[0-1]"])
    st = status(inst)
    assert [c["resources"] for c in st["children"]] == ["1 node", "1 node"]
    a = submit(inst, "hostname")
    b = submit(inst, "hostname")
    inst.flux("ensemble", "drain", check=True, timeout=120)
    nodes = sorted(json.loads(inst.flux("job", "info", j, "R", check=True).stdout)
                   ["execution"]["nodelist"][0] for j in (a, b))
    assert nodes == ["node0", "node1"]
    ranks = sorted(json.loads(inst.flux("job", "info", j, "R", check=True).stdout)
                   ["execution"]["R_lite"][0]["rank"] for j in (a, b))
    assert ranks == ["0", "1"]  # the leaf's rank 0, in the root's ranks


def test_bad_config_is_reported_and_jobs_run_here(make_instance):
    inst = make_instance(1, conf=[NODE8, 'ensemble.shape="2y"'])
    r = inst.flux("ensemble", "status")
    assert r.returncode == 1 and "shape level '2y'" in r.stdout
    jid = submit(inst, TEST_EXEC, "true")
    inst.flux("job", "wait-event", "-t", "30", jid, "clean", check=True)
    assert jobs_at(inst, None)[0]["status"] == "CD"
    inst2 = make_instance(1, conf=[NODE8, 'ensemble.shape="9"'])
    r = inst2.flux("ensemble", "status", "--wait")
    assert r.returncode == 1 and "cannot start 9 children on a node of 8 cores" in r.stdout
    inst3 = make_instance(1, conf=[NODE8, 'ensemble.policy="random"', 'ensemble.shape="2"'])
    r = inst3.flux("ensemble", "status")
    assert r.returncode == 1 and "policy must be one of rr, least-loaded" in r.stdout


def test_ordinary_instance_has_no_ensemble(instance):
    r = instance.flux("ensemble", "status")
    assert r.returncode == 1 and "not an ensemble" in r.stdout
    r = instance.flux("ensemble", "run", "-n", "1", "true")
    assert r.returncode == 1 and "--shape" in r.stderr


# ---------------------------------------------------------------- the tool
def test_ensemble_run_brings_up_a_tree(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ)
    env.pop("FLUX_URI", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "flux"), "ensemble", "run",
                        "--shape=2,2", f"-o--conf={NODE8}", "-n", "100", "--test-exec",
                        "--json", "true"], env=env, capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["jobs"] == 100 and rep["failed"] == 0 and rep["shape"] == "2,2"
    assert [lv["instances"] for lv in rep["levels"]] == [1, 2, 4]
    assert [lv["jobs"] for lv in rep["levels"]] == [100, 100, 100]
    assert rep["jobs_per_s"] > 0


def test_ensemble_run_in_an_ensemble_root(depth2):
    r = depth2.flux("ensemble", "run", "-n", "30", "--test-exec", "--json", "true", timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["jobs"] == 30 and rep["failed"] == 0
    r = depth2.flux("ensemble", "run", "-n", "3", "--json", "false", timeout=120)
    assert r.returncode == 1 and json.loads(r.stdout)["failed"] == 3
    r = depth2.flux("ensemble", "run", "--shape=node,core", "-n", "3", "true")
    assert r.returncode == 1 and "has shape '2'" in r.stderr


def test_ensemble_run_inside_an_ordinary_instance(make_instance):
    # the root is brought up as a job of this instance (over all its nodes)
    inst = make_instance(1, conf=[NODE8])
    r = inst.flux("ensemble", "run", "--shape=2", "-n", "20", "--test-exec", "--json", "true",
                  timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["jobs"] == 20 and rep["failed"] == 0
    assert [lv["instances"] for lv in rep["levels"]] == [1, 2]
    root = [j for j in jobs_at(inst, None) if j["name"] == "ensemble-root"]
    assert len(root) == 1 and root[0]["status"] == "CD"
    assert jobs_at(inst, None, "--filter=running") == []
