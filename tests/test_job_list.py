"""The job-list service (RFC 43) through a real one-core broker: order, attributes,
constraints, list-id waits, statistics, streaming, purge, and access rules."""

from __future__ import annotations

import errno
import json
import os
import socket

import pytest
from conftest import Instance
from flux.core.errors import FluxError
from flux.core.job import states as S
from flux.core.security.sign import wrap_none

HOST = socket.gethostname()
ONE_CORE = f'resource.config=[{{hosts="{HOST}", cores="0"}}]'
STREAMING = 2


def jobspec(run: str = "0s", name: str | None = None, status: int = 0,
            queue: str | None = None, duration: float = 0) -> dict:
    test: dict = {"run_duration": run}
    if status:
        test["override-status"] = status
    system: dict = {"duration": duration, "cwd": "/tmp", "exec": {"test": test}}
    if name:
        system["job"] = {"name": name}
    if queue:
        system["queue"] = queue
    return {"version": 1,
            "resources": [{"type": "slot", "count": 1, "label": "task",
                           "with": [{"type": "core", "count": 1}]}],
            "tasks": [{"command": ["/bin/true"], "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": system}}


def submit(h, js: dict | None = None, urgency: int = 16, userid: int | None = None) -> int:
    J = wrap_none(json.dumps(js or jobspec()).encode(),
                  os.getuid() if userid is None else userid)
    return h.rpc("job-ingest.submit", {"J": J, "urgency": urgency, "flags": 0}).get()["id"]


def list_id(h, jobid: int, attrs=("all",), state: int = 0) -> dict:
    p = {"id": jobid, "attrs": list(attrs)}
    if state:
        p["state"] = state
    return h.rpc("job-list.list-id", p).get()["job"]


def wait_inactive(h, jobid: int) -> dict:
    return list_id(h, jobid, state=S.INACTIVE)


def ids(h, **payload) -> list[int]:
    payload.setdefault("max_entries", 0)
    payload.setdefault("attrs", [])
    return [j["id"] for j in h.rpc("job-list.list", payload).get()["jobs"]]


def cancel(h, jobid: int) -> None:
    h.rpc("job-manager.raise", {"id": jobid, "type": "cancel", "severity": 0,
                                "note": "test over"}).get()


@pytest.fixture(scope="module")
def inst():
    i = Instance(1, conf=[ONE_CORE])
    yield i
    i.stop()


@pytest.fixture
def h(inst):
    handle = inst.handle()
    yield handle
    handle.close()


_scenes = iter(range(1000))


@pytest.fixture
def scene(h):
    """Two finished jobs, one running (holding the only core), three pending."""
    n = next(_scenes)
    c1 = submit(h, jobspec(name=f"done1-{n}"))
    wait_inactive(h, c1)
    c2 = submit(h, jobspec(name=f"done2-{n}", status=3))
    wait_inactive(h, c2)
    r1 = submit(h, jobspec(run="300s", name=f"runner-{n}"))
    list_id(h, r1, state=S.RUN)
    p1 = submit(h, urgency=10)
    p2 = submit(h, urgency=20)
    p3 = submit(h, urgency=10)
    list_id(h, p3, state=S.SCHED)
    yield {"c1": c1, "c2": c2, "r1": r1, "p1": p1, "p2": p2, "p3": p3, "n": n}
    for j in (p1, p2, p3, r1):
        try:
            cancel(h, j)
        except FluxError:
            pass
    for j in (p1, p2, p3, r1):
        wait_inactive(h, j)


def test_order_pending_running_inactive(h, scene):
    s = scene
    n = s["n"]
    got = ids(h, constraint={"or": [{"states": ["active"]},
                                    {"name": [f"done1-{n}", f"done2-{n}"]}]})
    assert got == [s["p2"], s["p1"], s["p3"], s["r1"], s["c2"], s["c1"]]
    # max_entries cuts in the same order
    assert ids(h, max_entries=2) == [s["p2"], s["p1"]]
    # since: active jobs always, inactive ones only when they finished after it
    t_c2 = list_id(h, s["c2"], ["t_inactive"])["t_inactive"]
    got = ids(h, since=t_c2 - 1e-6, constraint={"userid": [os.getuid()]})
    assert got[-1] == s["c2"] and s["c1"] not in got


def test_attributes_of_each_state(h, scene):
    s = scene
    run = list_id(h, s["r1"])
    assert run["state"] == S.RUN and run["name"] == f"runner-{s['n']}"
    assert run["nodelist"] == HOST
    assert (run["ranks"], run["nnodes"], run["ncores"], run["ntasks"]) == ("0", 1, 1, 1)
    assert run["cwd"] == "/tmp" and run["priority"] == 16 and "result" not in run
    assert run["annotations"]["sched"]["resource_summary"]
    pend = list_id(h, s["p2"])
    assert pend["state"] == S.SCHED and pend["urgency"] == 20 and pend["priority"] == 20
    assert "t_run" not in pend and "nodelist" not in pend and "ranks" not in pend
    done = list_id(h, s["c1"])
    assert done["result"] == S.COMPLETED and done["success"] is True
    assert done["waitstatus"] == 0 and done["exception_occurred"] is False
    assert done["t_submit"] <= done["t_depend"] <= done["t_run"] <= done["t_cleanup"] \
        <= done["t_inactive"]
    failed = list_id(h, s["c2"], ["result", "success", "waitstatus"])
    assert failed == {"id": s["c2"], "result": S.FAILED, "success": False,
                      "waitstatus": 3 << 8}


def test_canceled_pending_job(h):
    held = submit(h, urgency=0)
    j = list_id(h, held, ["state", "priority"], state=S.SCHED)
    assert j["priority"] == 0
    cancel(h, held)
    j = wait_inactive(h, held)
    assert j["result"] == S.CANCELED and j["exception_type"] == "cancel"
    assert j["exception_severity"] == 0 and j["exception_note"] == "test over"
    assert "waitstatus" not in j and "t_run" not in j


def test_constraints_through_rpc(h, scene):
    s = scene
    me = os.getuid()
    assert ids(h, constraint={"and": [{"userid": [me]}, {"states": ["pending"]}]}) == \
        [s["p2"], s["p1"], s["p3"]]
    assert ids(h, constraint={"name": [f"runner-{s['n']}"]}) == [s["r1"]]
    got = ids(h, constraint={"results": ["failed"]})
    assert s["c2"] in got and s["c1"] not in got
    assert s["r1"] in ids(h, constraint={"hostlist": [HOST]})
    assert s["p1"] not in ids(h, constraint={"ranks": ["0"]})
    assert ids(h, constraint={"userid": [me + 4242]}) == []
    with pytest.raises(FluxError) as ei:
        ids(h, constraint={"states": ["nonsense"]})
    assert ei.value.errno == errno.EINVAL and "nonsense" in ei.value.strerror


def test_bad_requests(h):
    with pytest.raises(FluxError) as ei:
        ids(h, attrs=["id", "frobnicity"])
    assert ei.value.errno == errno.EINVAL
    assert ei.value.strerror == "frobnicity is not a valid attribute"
    with pytest.raises(FluxError) as ei:
        h.rpc("job-list.list", {"attrs": []}).get()
    assert "max_entries" in ei.value.strerror
    with pytest.raises(FluxError) as ei:
        list_id(h, 123456789)
    assert ei.value.errno == errno.ENOENT


def test_list_attrs(h):
    attrs = h.rpc("job-list.list-attrs").get()["attrs"]
    for a in ("userid", "t_inactive", "nodelist", "annotations", "dependencies", "queue",
              "exception_note", "waitstatus", "ncores", "duration"):
        assert a in attrs


def test_list_id_waits_for_state(h):
    held = submit(h, urgency=0)
    f = h.rpc("job-list.list-id", {"id": held, "attrs": ["state"], "state": S.RUN})
    # not answered while held: the answer comes only after the release
    list_id(h, held, state=S.SCHED)
    assert not f.is_ready()
    h.rpc("job-manager.urgency", {"id": held, "urgency": 16}).get()
    assert f.get()["job"]["id"] == held
    assert wait_inactive(h, held)["result"] == S.COMPLETED


def test_list_id_wait_ends_if_job_never_gets_there(h):
    held = submit(h, urgency=0)
    f = h.rpc("job-list.list-id", {"id": held, "attrs": ["state"], "state": S.RUN})
    cancel(h, held)
    assert f.get()["job"] == {"id": held, "state": S.INACTIVE}


def test_streaming_list(h, scene):
    f = h.rpc("job-list.list", {"max_entries": 0, "attrs": ["state"]}, flags=STREAMING)
    first = f.get()
    assert first["version"] == 1 and len(first["jobs"]) >= 6
    f.reset()
    with pytest.raises(FluxError) as ei:
        while True:
            f.get()
            f.reset()
    assert ei.value.errno == errno.ENODATA


def test_job_stats(h, scene):
    st = h.rpc("job-list.job-stats").get()
    js = st["job_states"]
    assert js["sched"] == 3 and js["run"] == 1
    assert js["total"] == sum(v for k, v in js.items() if k != "total")
    assert st["failed"] >= 1 and st["successful"] >= 1


def test_queue_stats_and_filter(make_instance):
    inst = make_instance(1, conf=[ONE_CORE, "queues.batch={}", "queues.debug={}"])
    h = inst.handle()
    held = submit(h, jobspec(queue="debug"), urgency=0)
    list_id(h, held, state=S.SCHED)
    a = submit(h, jobspec(queue="batch"))
    wait_inactive(h, a)
    assert ids(h, constraint={"queue": ["batch"]}) == [a]
    st = h.rpc("job-list.job-stats").get()
    q = [x for x in st["queues"] if x["name"] == "batch"]
    assert q and q[0]["job_states"]["inactive"] == 1 and q[0]["successful"] == 1
    assert q[0]["job_states"]["total"] == 1
    d = [x for x in st["queues"] if x["name"] == "debug"]
    assert d and d[0]["job_states"]["sched"] == 1


def test_guest_access(inst, monkeypatch):
    """Guests can list (not private mode) and only reach jobs through job-list."""
    owner = inst.handle()
    guest_uid = os.getuid() + 31000
    monkeypatch.setenv("FLUX_HANDLE_USERID", str(guest_uid))
    monkeypatch.setenv("FLUX_HANDLE_ROLEMASK", "2")
    g = inst.handle()
    mine = submit(g, userid=guest_uid)
    j = wait_inactive(owner, mine)
    assert j["userid"] == guest_uid
    assert mine in ids(g, constraint={"userid": [guest_uid]})


def test_purge_removes_jobs(make_instance):
    inst = make_instance(1, conf=[ONE_CORE, "job-manager.inactive-num-limit=2"])
    h = inst.handle()
    jobs = [submit(h) for _ in range(4)]
    for j in jobs:
        try:
            wait_inactive(h, j)
        except FluxError as exc:  # purged before we asked
            assert exc.errno == errno.ENOENT
    got = ids(h, constraint={"states": ["inactive"]})
    assert got == jobs[:-3:-1]  # the two most recent remain
    st = h.rpc("job-list.job-stats").get()
    assert st["inactive_purged"] == 2 and st["job_states"]["inactive"] == 2


@pytest.mark.slow
def test_ten_thousand_jobs_end_to_end(make_instance):
    """10,000 finished jobs through the real pipeline; listings stay fast."""
    import time

    inst = make_instance(1, conf=["job-manager.inactive-num-limit=20000"])
    h = inst.handle()
    J = wrap_none(json.dumps(jobspec()).encode(), os.getuid())
    jobs: list[int] = []
    for _ in range(20):
        r = h.rpc("job-ingest.submit", {"jobs": [{"J": J, "urgency": 16, "flags": 0}] * 500})
        jobs += [x["id"] for x in r.get()["jobs"]]
    for j in jobs[::500] + [jobs[-1]]:
        wait_inactive(h, j)
    t0 = time.perf_counter()
    everything = h.rpc("job-list.list", {"max_entries": 0, "attrs": ["all"]}).get()["jobs"]
    t_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    default = ids(h, max_entries=1001, constraint={"and": [{"userid": [os.getuid()]},
                                                           {"states": ["pending", "running"]}]})
    t_default = time.perf_counter() - t0
    assert len(everything) == 10000 and default == []
    t = [x["t_inactive"] for x in everything]
    assert t == sorted(t, reverse=True)  # most recently finished first
    assert t_all < 3.0 and t_default < 0.2
    r = inst.flux("jobs", "-a", "-n", check=True)
    assert len(r.stdout.splitlines()) == 1000
