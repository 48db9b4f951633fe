"""The `dependencies` jobtap plugin (plugins/jobtap-dependencies): RFC 26 schemes through
a real one-core broker, rejections at submit, and the plugin's index on a fake manager."""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import time

import flux.kvs
import pytest
from conftest import Instance
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_f58, encode_hex, kvs_key
from flux.core.job_manager.job import CLEANUP, DEPEND, INACTIVE, PRIORITY, RUN, Job
from flux.core.kvs import treeobj as T
from flux.core.security.sign import wrap_none
from flux_jobtap_dependencies import plugin as deps

HOST = socket.gethostname()
ONE_CORE = f'resource.config=[{{hosts="{HOST}", cores="0"}}]'
WAITABLE = 4


# ----------------------------------------------------------------- helpers

def jobspec(run: str = "0s", name: str | None = None, dependencies: list | None = None,
            status: int = 0) -> dict:
    test: dict = {"run_duration": run}
    if status:
        test["override-status"] = status
    system: dict = {"duration": 0, "exec": {"test": test}}
    if name:
        system["job"] = {"name": name}
    if dependencies:
        system["dependencies"] = [
            {"scheme": d.split(":", 1)[0], "value": d.split(":", 1)[1]} if isinstance(d, str)
            else d for d in dependencies]
    return {"version": 1,
            "resources": [{"type": "slot", "count": 1, "label": "task",
                           "with": [{"type": "core", "count": 1}]}],
            "tasks": [{"command": ["true"], "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": system}}


def submit(h, js: dict, urgency: int = 16, flags: int = WAITABLE) -> int:
    J = wrap_none(json.dumps(js).encode(), os.getuid())
    return h.rpc("job-ingest.submit", {"J": J, "urgency": urgency, "flags": flags}).get()["id"]


def eventlog(h, jobid: int) -> list[dict]:
    raw = flux.kvs.get_raw(h, kvs_key(jobid, "eventlog"), namespace="primary")
    return [json.loads(line) for line in raw.splitlines()]


def wait_event(h, jobid: int, name: str, context: dict | None = None) -> dict:
    """Block on a KVS watch of the job's eventlog until event `name` (with `context`
    items, if given) is appended; fail if the job ends (clean) without it."""
    f = flux.kvs.watch(h, kvs_key(jobid, "eventlog"), namespace="primary",
                       flags=T.WATCH | T.WAITCREATE | T.WATCH_APPEND)
    seen = []
    try:
        while True:
            data = base64.b64decode(f.get()["val"]["data"])
            for line in data.splitlines():
                e = json.loads(line)
                seen.append(e["name"])
                ctx = e.get("context") or {}
                if e["name"] == name and all(ctx.get(k) == v for k, v in (context or {}).items()):
                    return e
                if e["name"] == "clean":
                    raise AssertionError(f"job {jobid} ended without '{name}': {seen}")
            f.reset()
    finally:
        f.cancel()


def wait(h, jobid: int) -> dict:
    return h.rpc("job-manager.wait", {"id": jobid}).get()


def cancel(h, jobid: int) -> None:
    h.rpc("job-manager.raise", {"id": jobid, "type": "cancel", "severity": 0,
                                "note": "canceled by test"}).get()


def release(h, jobid: int) -> None:
    h.rpc("job-manager.urgency", {"id": jobid, "urgency": 16}).get()


def first(log: list[dict], name: str) -> dict:
    return next(e for e in log if e["name"] == name)


def dep_events(log: list[dict]) -> list[tuple[str, str]]:
    return [(e["name"], e["context"]["description"]) for e in log
            if e["name"] in ("dependency-add", "dependency-remove")]


def rejected(h, js: dict) -> str:
    with pytest.raises(FluxError) as ei:
        submit(h, js)
    assert ei.value.errno == errno.EINVAL
    return ei.value.strerror


# ------------------------------------------------------------ real broker

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


def test_afterok_chain(h):
    a = submit(h, jobspec(), urgency=0)  # held, so the chain is built on an active job
    b = submit(h, jobspec(dependencies=[f"afterok:{a}"]))
    c = submit(h, jobspec(dependencies=[f"afterok:{encode_f58(b)}"]))
    wait_event(h, c, "dependency-add")
    release(h, a)
    assert wait(h, c)["success"] is True
    la, lb, lc = eventlog(h, a), eventlog(h, b), eventlog(h, c)
    assert dep_events(lb) == [("dependency-add", f"after-success={a}"),
                              ("dependency-remove", f"after-success={a}")]
    assert dep_events(lc) == [("dependency-add", f"after-success={encode_f58(b)}"),
                              ("dependency-remove", f"after-success={encode_f58(b)}")]
    # each starts only after its target is inactive
    assert first(lb, "depend")["timestamp"] >= first(la, "clean")["timestamp"]
    assert first(lc, "depend")["timestamp"] >= first(lb, "clean")["timestamp"]
    assert wait(h, a)["success"] and wait(h, b)["success"]


def test_target_failure_releases_afternotok_and_afterany_fails_afterok(h):
    a = submit(h, jobspec(status=1), urgency=0)
    notok = submit(h, jobspec(dependencies=[f"afternotok:{encode_hex(a)}"]))
    anyd = submit(h, jobspec(dependencies=[f"afterany:{a}"]))
    ok = submit(h, jobspec(dependencies=[f"afterok:{a}"]))
    wait_event(h, ok, "dependency-add")
    release(h, a)
    assert "exit code 1" in wait(h, a)["errstr"]
    assert wait(h, notok)["success"] is True
    assert wait(h, anyd)["success"] is True
    r = wait(h, ok)
    assert r["success"] is False
    exc = first(eventlog(h, ok), "exception")["context"]
    assert exc["type"] == "dependency" and exc["severity"] == 0
    assert exc["note"] == (f"dependency after-success={a} can never be satisfied:"
                           f" job {a} failed (exit code 1)")
    assert "alloc" not in [e["name"] for e in eventlog(h, ok)]
    # the target is now inactive: an afterok on it is refused at submit, naming why,
    # while afternotok on it is satisfied at once
    assert rejected(h, jobspec(dependencies=[f"afterok:{a}"])) == (
        f"dependency afterok:{a} can never be satisfied: job {a} failed (exit code 1)")
    late = submit(h, jobspec(dependencies=[f"afternotok:{a}"]))
    assert wait(h, late)["success"] is True
    assert dep_events(eventlog(h, late)) == [("dependency-add", f"after-failure={a}"),
                                             ("dependency-remove", f"after-failure={a}")]


def test_afterstart_releases_when_the_target_starts(h):
    a = submit(h, jobspec(run="60s"))
    b = submit(h, jobspec(dependencies=[f"afterstart:{a}"]))
    old = submit(h, jobspec(dependencies=[f"after:{a}"]))  # deprecated spelling
    # released while the target still runs (one core: they then wait for it)
    wait_event(h, b, "depend")
    wait_event(h, old, "depend")
    assert "finish" not in [e["name"] for e in eventlog(h, a)]
    assert dep_events(eventlog(h, b))[0] == ("dependency-add", f"after-start={a}")
    cancel(h, a)
    assert wait(h, b)["success"] and wait(h, old)["success"]


def test_canceled_pending_target_satisfies_only_afterany(h):
    a = submit(h, jobspec(), urgency=0)
    start = submit(h, jobspec(dependencies=[f"afterstart:{a}"]))
    notok = submit(h, jobspec(dependencies=[f"afternotok:{a}"]))
    anyd = submit(h, jobspec(dependencies=[f"afterany:{a}"]))
    wait_event(h, anyd, "dependency-add")
    cancel(h, a)
    assert wait(h, anyd)["success"] is True
    for j, desc in ((start, "after-start"), (notok, "after-failure")):
        r = wait(h, j)
        assert r["success"] is False
        note = first(eventlog(h, j), "exception")["context"]["note"]
        assert note == f"dependency {desc}={a} can never be satisfied: job {a} never started"


def test_afterexcept(h):
    a = submit(h, jobspec(run="60s"))
    wait_event(h, a, "start")
    b = submit(h, jobspec(dependencies=[f"afterexcept:{a}"]))
    wait_event(h, b, "dependency-add")
    cancel(h, a)  # a fatal exception while running
    assert wait(h, b)["success"] is True
    ok = submit(h, jobspec(), urgency=0)
    c = submit(h, jobspec(dependencies=[f"afterexcept:{ok}"]))
    wait_event(h, c, "dependency-add")
    release(h, ok)
    assert wait(h, ok)["success"] is True
    assert wait(h, c)["success"] is False
    assert first(eventlog(h, c), "exception")["context"]["note"].endswith(
        f"job {ok} succeeded")


def test_singleton(h):
    running = submit(h, jobspec(run="60s", name="solo"))
    wait_event(h, running, "start")
    s1 = submit(h, jobspec(name="solo", dependencies=["singleton:"]))
    s2 = submit(h, jobspec(name="solo", dependencies=["singleton:"]))
    other = submit(h, jobspec(name="other", dependencies=["singleton:"]))
    wait_event(h, s2, "dependency-add", {"description": "singleton"})
    # another name: nothing to wait for, no dependency events at all
    wait_event(h, other, "depend")
    assert dep_events(eventlog(h, other)) == []
    cancel(h, running)
    assert wait(h, s1)["success"] is True
    assert wait(h, s2)["success"] is True
    l1, l2 = eventlog(h, s1), eventlog(h, s2)
    assert dep_events(l1) == [("dependency-add", "singleton"), ("dependency-remove", "singleton")]
    # one at a time: s2 is released only once s1 is inactive
    assert first(l2, "depend")["timestamp"] >= first(l1, "clean")["timestamp"]
    assert wait(h, other)["success"] is True
    assert "explicit job name" in rejected(h, jobspec(dependencies=["singleton:"]))


def test_begin_time(h):
    begin = time.time() + 0.3
    j = submit(h, jobspec(dependencies=[{"scheme": "begin-time", "value": str(begin)}]))
    assert wait(h, j)["success"] is True
    log = eventlog(h, j)
    assert dep_events(log) == [("dependency-add", f"begin-time={begin:.3f}"),
                               ("dependency-remove", f"begin-time={begin:.3f}")]
    assert first(log, "depend")["timestamp"] >= begin
    # a job waiting for a far begin-time can be canceled (its timer goes with it)
    far = submit(h, jobspec(dependencies=[f"begin-time:{time.time() + 3600}"]))
    wait_event(h, far, "dependency-add")
    cancel(h, far)
    assert "cancel" in wait(h, far)["errstr"]


def test_several_dependencies_all_must_be_satisfied(h):
    a = submit(h, jobspec(), urgency=0)
    b = submit(h, jobspec(), urgency=0)
    c = submit(h, jobspec(dependencies=[f"afterok:{a}", f"afterany:{b}", f"afterok:{a}"]))
    wait_event(h, c, "dependency-add")
    release(h, a)
    assert wait(h, a)["success"] is True
    assert [e["name"] for e in eventlog(h, c)].count("depend") == 0
    release(h, b)
    assert wait(h, c)["success"] is True
    # the duplicate is added once
    assert sorted(dep_events(eventlog(h, c))) == sorted([
        ("dependency-add", f"after-success={a}"), ("dependency-add", f"after-finish={b}"),
        ("dependency-remove", f"after-success={a}"), ("dependency-remove", f"after-finish={b}")])


def test_bad_dependencies_rejected_at_submit(h):
    before = h.rpc("job-manager.getinfo").get()["max_jobid"]
    msg = rejected(h, jobspec(dependencies=["afterfoo:123"]))
    assert "unknown dependency scheme 'afterfoo'" in msg and "afterok" in msg
    assert rejected(h, jobspec(dependencies=["afterok:notanid"])) == (
        "dependency afterok:notanid: 'notanid' is not a valid job id")
    unknown = encode_f58(123456789)
    assert rejected(h, jobspec(dependencies=[f"afterany:{unknown}"])) == (
        f"dependency afterany:{unknown}: job {unknown} not found"
        " (it must be active or recently inactive)")
    assert "begin-time must be a time" in rejected(
        h, jobspec(dependencies=["begin-time:tomorrow"]))
    js = jobspec()
    js["attributes"]["system"]["dependencies"] = [{"scheme": "afterok"}]
    assert "missing required key 'value'" in rejected(h, js)
    # nothing half-made: no job was created by the rejections
    assert h.rpc("job-manager.getinfo").get()["max_jobid"] == before


# ------------------------------------------------------- index (fake manager)

class FakeManager:
    """Just what the plugin uses: jobs, inactive, dependency_add/remove, post."""

    def __init__(self):
        self.jobs: dict[int, Job] = {}
        self.inactive: dict[int, Job] = {}
        self.events: list[tuple[int, str, dict]] = []

    def new(self, jobid: int, userid: int = 1, **system) -> Job:
        js = {"attributes": {"system": system}}
        job = Job(id=jobid, userid=userid, urgency=16, flags=0, t_submit=0.0, jobspec=js)
        deps.jobtap_validate(job=job, manager=self)
        self.jobs[jobid] = job
        self.state(job, DEPEND)
        deps.jobtap_dependencies(job=job, dependencies=[], manager=self)
        if not job.dependencies and job.state == DEPEND:
            self.state(job, PRIORITY)
        return job

    def state(self, job: Job, new: str) -> None:
        prev, job.state = job.state, new
        job.times["t_" + new.lower()] = 1.0
        deps.jobtap_state(job=job, state=new, prev=prev, manager=self)
        if new == INACTIVE:
            self.inactive[job.id] = self.jobs.pop(job.id)

    def post(self, job: Job, name: str, context: dict | None = None) -> None:
        self.events.append((job.id, name, context or {}))
        job.eventlog.append({"name": name, "context": context or {}})
        deps.jobtap_event(job=job, name=name, context=context or {}, manager=self)
        if name == "exception":
            job.exception = context
            self.state(job, CLEANUP)
        elif name == "start":
            job.started = True

    def dependency_add(self, job: Job, description: str) -> None:
        job.dependencies.add(description)
        self.events.append((job.id, "dependency-add", {"description": description}))

    def dependency_remove(self, job: Job, description: str) -> None:
        job.dependencies.discard(description)
        self.events.append((job.id, "dependency-remove", {"description": description}))
        if not job.dependencies and job.state == DEPEND:
            self.state(job, PRIORITY)

    def finish(self, job: Job, status: int) -> None:
        self.state(job, RUN)
        self.post(job, "start")
        job.status = status
        job.eventlog.append({"name": "finish", "context": {"status": status}})
        self.state(job, CLEANUP)
        self.state(job, INACTIVE)


def test_index_many_dependents_resolved_and_emptied():
    m = FakeManager()
    target = m.new(1)
    n = 1000
    dependents = [m.new(100 + i, dependencies=[
        {"scheme": "afterok" if i % 2 else "afterstart", "value": "1"}]) for i in range(n)]
    st = deps.state_of(m)
    assert all(j.state == DEPEND for j in dependents)
    assert st.stats()["waiting"] == n and st.stats()["held"] == n
    # a canceled dependent leaves the index at once
    m.post(dependents[1], "exception", {"type": "cancel", "severity": 0})
    assert st.stats()["waiting"] == n - 1
    m.finish(target, 0)
    assert all(j.state == PRIORITY for i, j in enumerate(dependents) if i != 1)
    assert st.stats() == {"waiting": 0, "held": 0, "timers": 0, "named": 0, "singletons": 0}


def test_other_users_job_and_purged_target_rejected():
    m = FakeManager()
    m.new(1, userid=7)
    with pytest.raises(ValueError, match="permission denied: job 1 belongs to another user"):
        m.new(2, userid=8, dependencies=[{"scheme": "afterany", "value": "1"}])
    with pytest.raises(ValueError, match="job 999 not found"):
        m.new(3, userid=7, dependencies=[{"scheme": "afterany", "value": "999"}])


def test_verdicts():
    def job(times=(), started=False, status=0, exc=None, end="finish"):
        j = Job(id=5, userid=1, urgency=16, flags=0, t_submit=0.0, jobspec={})
        j.times = {t: 1.0 for t in times}
        j.started, j.status, j.exception = started, status, exc
        j.eventlog = [{"name": end, "context": {"severity": 0}}]
        return j

    never = job()
    ok = job(("t_run",), started=True)
    failed = job(("t_run",), started=True, status=256)
    killed = job(("t_run",), started=True, status=15, exc={"type": "cancel"}, end="exception")
    v = deps.verdict
    assert v(deps.AFTER_FINISH, never) is None
    assert v(deps.AFTER_START, never) == "never started"
    assert v(deps.AFTER_SUCCESS, ok) is None and v(deps.AFTER_SUCCESS, failed) == "failed (exit code 1)"
    assert v(deps.AFTER_FAILURE, failed) is None and v(deps.AFTER_FAILURE, ok) == "succeeded"
    assert v(deps.AFTER_EXCEPT, killed) is None
    assert v(deps.AFTER_EXCEPT, failed) == "ended without a fatal exception"
    assert v(deps.AFTER_SUCCESS, killed) == "failed (exception type=cancel)"
