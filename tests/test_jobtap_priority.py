"""The `priority-default` jobtap plugin (plugins/jobtap-priority) and the job manager's
hold/release/expedite handling, on a one-core instance where order is visible."""

from __future__ import annotations

import base64
import json
import os
import socket

import flux.kvs
import pytest
from conftest import Instance
from flux.core.job.fluid import kvs_key
from flux.core.kvs import treeobj as T
from flux.core.security.sign import wrap_none
from flux_jobtap_priority.plugin import jobtap_priority, priority_of

HOST = socket.gethostname()
ONE_CORE = f'resource.config=[{{hosts="{HOST}", cores="0"}}]'
WAITABLE = 4
MAXPRIO = 4294967295


# ----------------------------------------------------------------- helpers

def jobspec(run: str = "0s", name: str | None = None) -> dict:
    system: dict = {"duration": 0, "exec": {"test": {"run_duration": run}}}
    if name:
        system["job"] = {"name": name}
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


def wait_event(h, jobid: int, name: str) -> dict:
    """Block on a KVS watch of the job's eventlog until event `name` is appended; fail if
    the job ends (clean) without it."""
    f = flux.kvs.watch(h, kvs_key(jobid, "eventlog"), namespace="primary",
                       flags=T.WATCH | T.WAITCREATE | T.WATCH_APPEND)
    seen = []
    try:
        while True:
            data = base64.b64decode(f.get()["val"]["data"])
            for line in data.splitlines():
                e = json.loads(line)
                seen.append(e["name"])
                if e["name"] == name:
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


def names(log: list[dict]) -> list[str]:
    return [e["name"] for e in log]


def first(log: list[dict], name: str) -> dict:
    return next(e for e in log if e["name"] == name)


# -------------------------------------------------------------------- unit

def test_priority_of_urgency():
    assert [priority_of(u) for u in (0, 1, 16, 30, 31)] == [0, 1, 16, 30, MAXPRIO]

    class J:
        urgency = 31

    assert jobtap_priority(job=J()) == MAXPRIO


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


def test_priority_event_follows_urgency(h):
    ids = {u: submit(h, jobspec(), urgency=u) for u in (1, 16, 31)}
    for u, jobid in ids.items():
        assert wait(h, jobid)["success"] is True
        assert first(eventlog(h, jobid), "priority")["context"] == {"priority": priority_of(u)}


def test_held_job_stays_pending_until_released(h):
    held = submit(h, jobspec(), urgency=0)
    assert wait_event(h, held, "priority")["context"] == {"priority": 0}
    # the only core is free, yet a later job runs and the held one does not
    later = submit(h, jobspec())
    assert wait(h, later)["success"] is True
    assert "alloc" not in names(eventlog(h, held))
    # release: urgency event, priority recomputed, then scheduled and run
    assert h.rpc("job-manager.urgency", {"id": held, "urgency": 16}).get() == {"old_urgency": 0}
    assert wait(h, held)["success"] is True
    log = names(eventlog(h, held))
    i = log.index("urgency")
    assert log[i:i + 3] == ["urgency", "priority", "alloc"]
    assert first(eventlog(h, held)[i:], "priority")["context"] == {"priority": 16}


def test_expedited_jobs_run_before_earlier_ones(h):
    blocker = submit(h, jobspec(run="60s"))
    wait_event(h, blocker, "start")
    j1 = submit(h, jobspec())
    j2 = submit(h, jobspec())
    j3 = submit(h, jobspec(), urgency=31)  # expedited at submit
    j4 = submit(h, jobspec())
    # expedite j4 while its alloc request is queued in the scheduler: the request is
    # withdrawn and sent again with the new priority
    wait_event(h, j4, "priority")
    h.rpc("job-manager.urgency", {"id": j4, "urgency": 31}).get()
    # and hold j2 while it is queued: it must not run
    h.rpc("job-manager.urgency", {"id": j2, "urgency": 0}).get()
    cancel(h, blocker)
    for j in (j1, j3, j4):
        assert wait(h, j)["success"] is True
    t = {j: first(eventlog(h, j), "alloc")["timestamp"] for j in (j1, j3, j4)}
    assert t[j3] < t[j4] < t[j1], t
    log4 = eventlog(h, j4)
    assert [e["context"]["priority"] for e in log4 if e["name"] == "priority"] == [16, MAXPRIO]
    # j2 is held: a job submitted after it runs, j2 does not
    j5 = submit(h, jobspec())
    assert wait(h, j5)["success"] is True
    assert "alloc" not in names(eventlog(h, j2))
    h.rpc("job-manager.urgency", {"id": j2, "urgency": 16}).get()
    assert wait(h, j2)["success"] is True
    assert wait(h, blocker)["success"] is False


def test_without_a_priority_plugin_the_job_gets_an_exception():
    i = Instance(1, conf=['job-manager.plugins-disable=["priority-default"]'])
    try:
        h = i.handle()
        jobid = submit(h, jobspec())
        r = wait(h, jobid)
        assert r["success"] is False
        assert "no jobtap plugin set a priority" in r["errstr"]
        exc = first(eventlog(h, jobid), "exception")["context"]
        assert exc["type"] == "priority" and exc["severity"] == 0
        assert "priority" not in names(eventlog(h, jobid))
        h.close()
    finally:
        i.stop()
