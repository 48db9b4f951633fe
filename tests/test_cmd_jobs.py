"""`flux jobs` against a real one-core instance: default selection (own pending and
running jobs), -a/-A/-u/-f/--name/-c/-i/--since, ids, --json, --stats[-only], the python
API (JobList, job_list, get_job, JobStats), and a child instance shown as one job."""

from __future__ import annotations

import json
import os
import socket

import pytest
from conftest import Instance
from flux.core.job import states as S
from flux.core.security.sign import wrap_none
from flux.job.JobID import JobID

HOST = socket.gethostname()
ONE_CORE = f'resource.config=[{{hosts="{HOST}", cores="0"}}]'


def jobspec(run: str = "0s", name: str | None = None, status: int = 0) -> dict:
    test: dict = {"run_duration": run}
    if status:
        test["override-status"] = status
    system: dict = {"duration": 0, "exec": {"test": test}}
    if name:
        system["job"] = {"name": name}
    return {"version": 1,
            "resources": [{"type": "slot", "count": 1, "label": "task",
                           "with": [{"type": "core", "count": 1}]}],
            "tasks": [{"command": ["/bin/true"], "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": system}}


def submit(h, js: dict | None = None, urgency: int = 16, userid: int | None = None) -> int:
    J = wrap_none(json.dumps(js or jobspec()).encode(),
                  os.getuid() if userid is None else userid)
    return h.rpc("job-ingest.submit", {"J": J, "urgency": urgency, "flags": 0}).get()["id"]


def wait_state(h, jobid: int, state: int) -> dict:
    return h.rpc("job-list.list-id", {"id": jobid, "attrs": ["state"], "state": state}).get()


def cancel(h, jobid: int) -> None:
    h.rpc("job-manager.raise", {"id": jobid, "type": "cancel", "severity": 0,
                                "note": "test over"}).get()


def f58(jobid: int) -> str:
    return str(JobID(jobid))


@pytest.fixture(scope="module")
def inst():
    i = Instance(1, conf=[ONE_CORE])
    h = i.handle()
    me = os.getuid()
    guest = me + 31000
    jobs = {
        "done": submit(h, jobspec(name="done")),
        "failed": submit(h, jobspec(name="failed", status=2)),
    }
    for j in jobs.values():
        wait_state(h, j, S.INACTIVE)
    jobs["run"] = submit(h, jobspec(run="600s", name="runner"))
    wait_state(h, jobs["run"], S.RUN)
    jobs["held"] = submit(h, jobspec(name="held"), urgency=0)
    os.environ["FLUX_HANDLE_USERID"] = str(guest)
    try:
        g = i.handle()
        jobs["guest"] = submit(g, jobspec(name="theirs"), userid=guest)
    finally:
        del os.environ["FLUX_HANDLE_USERID"]
    wait_state(h, jobs["guest"], S.SCHED)
    i.jobs = jobs
    i.guest = guest
    yield i
    for j in (jobs["held"], jobs["guest"], jobs["run"]):
        cancel(h, j)
    i.stop()


def rows(inst, *args) -> list[list[str]]:
    r = inst.flux("jobs", *args, check=True)
    return [line.split() for line in r.stdout.splitlines()]


def listed(inst, *args) -> list[str]:
    return [line[0] for line in rows(inst, "-n", *args)]


def test_default_lists_own_pending_and_running(inst):
    j = inst.jobs
    out = rows(inst)
    assert out[0] == ["JOBID", "USER", "NAME", "ST", "NTASKS", "NNODES", "TIME", "INFO"]
    assert [r[0] for r in out[1:]] == [f58(j["held"]), f58(j["run"])]
    held, run = out[1], out[2]
    assert held[2:] == ["held", "S", "1", "-", "-", "held"]
    assert run[2:4] == ["runner", "R"] and run[-1] == HOST


def test_all_states_users_and_filters(inst):
    j = inst.jobs
    assert listed(inst, "-a") == [f58(j["held"]), f58(j["run"]), f58(j["failed"]),
                                  f58(j["done"])]
    assert f58(j["guest"]) in listed(inst, "-A")
    assert listed(inst, "-u", str(inst.guest)) == [f58(j["guest"])]
    assert listed(inst, "-f", "completed") == [f58(j["done"])]
    assert listed(inst, "--filter=failed,run") == [f58(j["run"]), f58(j["failed"])]
    assert listed(inst, "-a", "--name", "failed") == [f58(j["failed"])]
    assert listed(inst, "-a", "-i", "0") == [f58(j["run"]), f58(j["failed"]), f58(j["done"])]
    assert listed(inst, "-a", "-i", HOST)[0] == f58(j["run"])
    failed = rows(inst, "-n", "-f", "failed")[0]
    assert failed[3] == "F"


def test_count_truncation_warning(inst):
    r = inst.flux("jobs", "-a", "-c", "1", check=True)
    assert len(r.stdout.splitlines()) == 2
    assert "warning: output truncated at 1 jobs." in r.stderr


def test_since(inst):
    j = inst.jobs
    assert listed(inst, "--since=-1h")[-1] == f58(j["done"])
    r = inst.flux("jobs", "--since=+1h")
    assert r.returncode == 1 and "appears to be in the future" in r.stderr


def test_job_ids_and_json(inst):
    j = inst.jobs
    out = listed(inst, f58(j["done"]), str(j["failed"]))
    assert sorted(out) == sorted([f58(j["done"]), f58(j["failed"])])
    r = inst.flux("jobs", "--json", f58(j["failed"]), check=True)
    d = json.loads(r.stdout)
    assert d["id"] == j["failed"] and d["result"] == "FAILED" and d["returncode"] == 2
    r = inst.flux("jobs", "--json", "-a", check=True)
    assert len(json.loads(r.stdout)["jobs"]) == 4
    r = inst.flux("jobs", "not_a_jobid")
    assert r.returncode == 2 and "invalid JobID value: 'not_a_jobid'" in r.stderr
    r = inst.flux("jobs", str(123456))
    assert "JobID 123456 unknown" in r.stderr


def test_stats(inst):
    r = inst.flux("jobs", "--stats", "-n", check=True)
    first = r.stdout.splitlines()[0]
    assert first == "1 running, 1 completed, 1 failed, 2 pending, 0 inactive purged"
    r = inst.flux("jobs", "--stats-only", check=True)
    assert r.stdout.startswith("1 running")
    r = inst.flux("jobs", "--json", "--stats")
    assert r.returncode == 1 and "incompatible" in r.stderr


def test_bad_options(inst):
    r = inst.flux("jobs", "-f", "bogus")
    assert r.returncode == 1 and "Invalid filter specified: bogus" in r.stderr
    r = inst.flux("jobs", "-u", "no-such-user-xyz")
    assert r.returncode == 1 and "Invalid user" in r.stderr
    r = inst.flux("jobs", "-i", "n[1-")
    assert r.returncode == 1 and "invalid targets" in r.stderr


def test_python_api(inst):
    from flux.job.list import JobList, get_job, job_list, job_list_inactive
    from flux.job.stats import JobStats

    h = inst.handle()
    j = inst.jobs
    names = [x.name for x in JobList(h, filters=["inactive"]).jobs()]
    assert names == ["failed", "done"]
    jl = JobList(h, ids=[j["done"], 999])
    got = jl.jobs()
    assert [x.id for x in got] == [j["done"]] and jl.errors == ["JobID 999 unknown"]
    assert [x["name"] for x in job_list(h, attrs=["name"], states=S.RUN).get_jobs()] == \
        ["runner"]
    assert len(job_list_inactive(h).get_jobs()) == 2
    d = get_job(h, j["done"])
    assert d["status"] == "COMPLETED" and d["returncode"] == 0 and d["nodelist"] == HOST
    assert get_job(h, 424242) is None
    st = JobStats(h).update_sync()
    assert (st.running, st.pending, st.successful, st.failed) == (1, 2, 1, 1)
    assert st.active == 3 and st.inactive == 2


def test_child_instance_is_one_job_and_recursion(inst):
    """A job carrying a child instance's URI (memo `uri`, as flux batch/alloc post) is
    listed as one job; -R descends into it (here the URI leads back to this instance,
    so -L 1 stops the descent)."""
    h = inst.handle()
    j = inst.jobs
    h.rpc("job-manager.memo", {"id": j["run"], "memo": {"uri": inst.uri}}).get()
    assert listed(inst).count(f58(j["run"])) == 1
    r = inst.flux("jobs", "-R", "-L", "1", check=True)
    lines = r.stdout.splitlines()
    i = lines.index(f"{f58(j['run'])}:")
    assert lines[i - 1] == "" and len(lines) > i + 1
    assert f58(j["held"]) in lines[i + 1]
