"""The job-info service (RFC 41) through a real one-core broker: lookup (memory and KVS,
JSON decoding, updates applied), eventlog-watch of the primary eventlog and of guest
eventlogs (guest namespace, then the primary copy), cancel, and access rules."""

from __future__ import annotations

import base64
import errno
import json
import os
import socket

import pytest
from conftest import Instance
from flux.core.errors import FluxError
from flux.core.job import states as S
from flux.core.job.fluid import encode_kvs
from flux.core.job_info.service import apply_updates
from flux.core.security.sign import wrap_none

HOST = socket.gethostname()
ONE_CORE = f'resource.config=[{{hosts="{HOST}", cores="0"}}]'
STREAMING = 2
APPEND = 32


def jobspec(run: str = "0s") -> dict:
    return {"version": 1,
            "resources": [{"type": "slot", "count": 1, "label": "task",
                           "with": [{"type": "core", "count": 1}]}],
            "tasks": [{"command": ["/bin/true"], "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": {"duration": 0, "exec": {"test": {"run_duration": run}}}}}


def submit(h, js: dict | None = None, urgency: int = 16, userid: int | None = None) -> int:
    J = wrap_none(json.dumps(js or jobspec()).encode(),
                  os.getuid() if userid is None else userid)
    return h.rpc("job-ingest.submit", {"J": J, "urgency": urgency, "flags": 0}).get()["id"]


def wait_state(h, jobid: int, state: int) -> dict:
    return h.rpc("job-list.list-id", {"id": jobid, "attrs": ["state"], "state": state}).get()


def watch(h, jobid: int, path: str = "eventlog", flags: int = 0):
    return h.rpc("job-info.eventlog-watch", {"id": jobid, "path": path, "flags": flags},
                 flags=STREAMING)


def drain(f) -> tuple[list[dict], int]:
    """Every event of a watch stream, and the errno that ended it."""
    out = []
    while True:
        try:
            r = f.get()
        except FluxError as exc:
            return out, exc.errno
        assert r["event"].endswith("\n")
        out.append(json.loads(r["event"]))
        f.reset()


def next_event(f) -> dict:
    r = f.get()
    f.reset()
    return json.loads(r["event"])


def kvs_put(h, ns: str, key: str, data: bytes, append: bool = False) -> None:
    op = {"key": key, "flags": APPEND if append else 0,
          "dirent": {"ver": 1, "type": "val", "data": base64.b64encode(data).decode()}}
    h.rpc("kvs.commit", {"namespace": ns, "flags": 0, "ops": [op]}).get()


def line(name: str, ts: float = 1.0, **ctx) -> bytes:
    e: dict = {"timestamp": ts, "name": name}
    if ctx:
        e["context"] = ctx
    return json.dumps(e, separators=(",", ":")).encode() + b"\n"


def cancel(h, jobid: int) -> None:
    h.rpc("job-manager.raise", {"id": jobid, "type": "cancel", "severity": 0,
                                "note": "done"}).get()


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


@pytest.fixture
def done_job(h):
    jobid = submit(h)
    wait_state(h, jobid, S.INACTIVE)
    return jobid


# ------------------------------------------------------------------- lookup

def test_lookup_strings_match_the_kvs(h, done_job):
    r = h.rpc("job-info.lookup", {"id": done_job, "keys": ["jobspec", "R", "eventlog", "J"],
                                  "flags": 0}).get()
    assert r["id"] == done_job
    d = encode_kvs(done_job)
    for key in ("jobspec", "eventlog", "J"):
        raw = h.rpc("kvs.lookup", {"key": f"{d}.{key}", "namespace": "primary"}).get()
        assert r[key] == base64.b64decode(raw["val"]["data"]).decode(), key
    assert json.loads(r["R"])["execution"]["nodelist"] == [HOST]
    names = [json.loads(x)["name"] for x in r["eventlog"].splitlines()]
    assert names[0] == "submit" and names[-1] == "clean"
    assert r["J"].endswith(".none")


def test_lookup_json_decode_and_current(h, done_job):
    r = h.rpc("job-info.lookup", {"id": done_job, "keys": ["jobspec", "R"],
                                  "flags": 1 | 2}).get()
    assert r["jobspec"]["tasks"][0]["command"] == ["/bin/true"]
    assert r["R"]["version"] == 1
    r = h.rpc("job-info.update-lookup", {"id": done_job, "key": "R", "flags": 0}).get()
    assert r["R"]["execution"]["R_lite"][0]["rank"] == "0"


def test_apply_updates():
    js = {"attributes": {"system": {"duration": 0}}}
    events = [{"name": "jobspec-update", "context": {"attributes.system.duration": 60,
                                                      "attributes.system.queue": "b"}},
              {"name": "jobspec-update", "context": {"attributes.system.duration": 90}}]
    out = apply_updates("jobspec", js, events)
    assert out["attributes"]["system"] == {"duration": 90, "queue": "b"}
    assert js["attributes"]["system"] == {"duration": 0}  # the original is not changed
    R = {"version": 1, "execution": {"expiration": 10.0}}
    out = apply_updates("R", R, [{"name": "resource-update", "context": {"expiration": 20.0}}])
    assert out["execution"]["expiration"] == 20.0 and R["execution"]["expiration"] == 10.0


def test_lookup_errors(h, done_job):
    with pytest.raises(FluxError) as ei:
        h.rpc("job-info.lookup", {"id": 1234567, "keys": ["jobspec"]}).get()
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(FluxError) as ei:
        h.rpc("job-info.lookup", {"id": done_job, "keys": ["guest.exec.eventlog"]}).get()
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(FluxError) as ei:
        h.rpc("job-info.lookup", {"id": done_job}).get()
    assert ei.value.errno == errno.EPROTO and "keys" in ei.value.strerror
    with pytest.raises(FluxError) as ei:
        h.rpc("job-info.lookup", {"id": done_job, "keys": ["R"], "flags": 64}).get()
    assert ei.value.errno == errno.EPROTO


def test_other_users_get_eperm(inst, h, monkeypatch):
    guest = os.getuid() + 31000
    monkeypatch.setenv("FLUX_HANDLE_USERID", str(guest))
    monkeypatch.setenv("FLUX_HANDLE_ROLEMASK", "2")
    g = inst.handle()
    theirs = submit(g, userid=guest)
    wait_state(h, theirs, S.INACTIVE)
    # the job's owner may read it, and so may the instance owner
    assert g.rpc("job-info.lookup", {"id": theirs, "keys": ["jobspec"]}).get()["id"] == theirs
    assert drain(watch(h, theirs))[1] == errno.ENODATA
    monkeypatch.setenv("FLUX_HANDLE_USERID", str(guest + 1))
    other = inst.handle()
    with pytest.raises(FluxError) as ei:
        other.rpc("job-info.lookup", {"id": theirs, "keys": ["jobspec"]}).get()
    assert ei.value.errno == errno.EPERM
    events, err = drain(watch(other, theirs))
    assert events == [] and err == errno.EPERM


# -------------------------------------------------------- primary eventlog

def test_watch_inactive_job_replays_and_ends(h, done_job):
    events, err = drain(watch(h, done_job))
    assert err == errno.ENODATA
    assert [e["name"] for e in events][:2] == ["submit", "validate"]
    assert events[-1]["name"] == "clean"


def test_watch_follows_a_job_until_clean(h):
    held = submit(h, urgency=0)
    wait_state(h, held, S.SCHED)
    f = watch(h, held)
    assert [next_event(f)["name"] for _ in range(4)] == ["submit", "validate", "depend",
                                                          "priority"]
    h.rpc("job-manager.urgency", {"id": held, "urgency": 16}).get()
    events, err = drain(f)
    names = [e["name"] for e in events]
    assert err == errno.ENODATA
    assert names[0] == "urgency" and "alloc" in names and names[-1] == "clean"


def test_watch_needs_streaming_flag(h, done_job):
    with pytest.raises(FluxError) as ei:
        h.rpc("job-info.eventlog-watch", {"id": done_job, "path": "eventlog"}).get()
    assert ei.value.errno == errno.EPROTO


@pytest.mark.parametrize("topic", ["job-info.eventlog-watch-cancel", "job-info.cancel"])
def test_watch_cancel(h, topic):
    held = submit(h, urgency=0)
    f = watch(h, held)
    assert next_event(f)["name"] == "submit"
    h.rpc(topic, {"matchtag": f.matchtag}, flags=1)
    events, err = drain(f)
    assert err == errno.ENODATA and "clean" not in [e["name"] for e in events]
    cancel(h, held)


# ------------------------------------------------------------ guest paths

def test_guest_watch_namespace_then_copy(h):
    """job-exec's pattern: guest namespace while running, copied to job.<id>.guest, removed."""
    held = submit(h, urgency=0)
    wait_state(h, held, S.SCHED)
    ns = f"job-{held}"
    f = watch(h, held, "guest.exec.eventlog", flags=1)
    out = watch(h, held, "guest.output", flags=1)
    h.rpc("kvs.namespace-create", {"namespace": ns, "owner": os.getuid(), "flags": 0}).get()
    kvs_put(h, ns, "exec.eventlog", line("init"))
    assert next_event(f)["name"] == "init"  # followed as soon as the namespace appears
    kvs_put(h, ns, "exec.eventlog", line("starting") + line("shell.init", size=1),
            append=True)
    assert [next_event(f)["name"] for _ in range(2)] == ["starting", "shell.init"]
    header = line("header", version=1, encoding={"stdout": "UTF-8", "stderr": "UTF-8"},
                  count={"stdout": 1, "stderr": 1}, options={})
    kvs_put(h, ns, "output", header + line("data", stream="stdout", rank="0", data="hi\n"))
    assert next_event(out)["name"] == "header"
    assert next_event(out)["context"]["data"] == "hi\n"
    # more is written, then the namespace is copied to the primary and removed: the rest
    # of each log comes from the copy, nothing twice
    kvs_put(h, ns, "exec.eventlog", line("complete", status=0), append=True)
    rest = line("shell-exit", rank=0) + line("done")
    d = encode_kvs(held)
    full = line("init") + line("starting") + line("shell.init", size=1) + \
        line("complete", status=0) + rest
    kvs_put(h, "primary", f"{d}.guest.exec.eventlog", full)
    kvs_put(h, "primary", f"{d}.guest.output", header +
            line("data", stream="stdout", rank="0", data="hi\n") +
            line("data", stream="stdout", rank="0", eof=True) +
            line("data", stream="stderr", rank="0", eof=True))
    h.rpc("kvs.namespace-remove", {"namespace": ns}).get()
    events, err = drain(f)
    assert [e["name"] for e in events] == ["complete", "shell-exit", "done"]
    assert err == errno.ENODATA
    events, err = drain(out)
    assert [e["context"].get("eof") for e in events] == [True, True] and err == errno.ENODATA
    # afterwards the copy is served directly
    events, err = drain(watch(h, held, "guest.exec.eventlog"))
    assert [e["name"] for e in events][-1] == "done" and err == errno.ENODATA
    cancel(h, held)


def test_guest_watch_ends_at_done_and_at_output_eof(h):
    held = submit(h, urgency=0)
    ns = f"job-{held}"
    h.rpc("kvs.namespace-create", {"namespace": ns, "owner": os.getuid(), "flags": 0}).get()
    kvs_put(h, ns, "exec.eventlog", line("init") + line("done") + line("never-sent"))
    events, err = drain(watch(h, held, "guest.exec.eventlog"))
    assert [e["name"] for e in events] == ["init", "done"] and err == errno.ENODATA
    header = line("header", count={"stdout": 2, "stderr": 2})
    kvs_put(h, ns, "output", header + line("data", stream="stdout", rank="0-1", eof=True))
    f = watch(h, held, "guest.output")
    assert next_event(f)["name"] == "header"
    next_event(f)
    assert not f.is_ready()
    kvs_put(h, ns, "output", line("data", stream="stderr", rank="all", eof=True), append=True)
    events, err = drain(f)
    assert len(events) == 1 and err == errno.ENODATA
    h.rpc("kvs.namespace-remove", {"namespace": ns}).get()
    cancel(h, held)


def test_guest_path_of_a_job_that_never_ran(h):
    held = submit(h, urgency=0)
    f = watch(h, held, "guest.exec.eventlog", flags=1)
    cancel(h, held)
    events, err = drain(f)
    assert events == [] and err == errno.ENOENT
    with pytest.raises(FluxError) as ei:
        watch(h, held, "guest.exec.eventlog").get()
    assert ei.value.errno == errno.ENOENT


def test_guest_key_missing_without_waitcreate(h):
    held = submit(h, urgency=0)
    ns = f"job-{held}"
    h.rpc("kvs.namespace-create", {"namespace": ns, "owner": os.getuid(), "flags": 0}).get()
    kvs_put(h, ns, "exec.eventlog", line("init"))
    with pytest.raises(FluxError) as ei:
        watch(h, held, "guest.input").get()
    assert ei.value.errno == errno.ENOENT
    h.rpc("kvs.namespace-remove", {"namespace": ns}).get()
    cancel(h, held)


def test_update_watch(h):
    held = submit(h, urgency=0)
    f = h.rpc("job-info.update-watch", {"id": held, "key": "jobspec", "flags": 0},
              flags=STREAMING)
    first = f.get()
    assert first["jobspec"]["attributes"]["system"]["duration"] == 0
    f.reset()
    cancel(h, held)
    with pytest.raises(FluxError) as ei:
        f.get()
    assert ei.value.errno == errno.ENODATA


def test_R_whole_from_the_kvs_redacted_in_the_journal(h):
    """The job manager keeps R without its JGF (`scheduling`); job-info serves the whole
    R (a child instance reads its JGF through it) while the job runs and once inactive,
    and the journal sends the redacted one, replayed from the KVS for inactive jobs."""
    running = submit(h, jobspec(run="60s"))
    wait_state(h, running, S.RUN)
    for jobid in (running, None):
        if jobid is None:
            cancel(h, running)
            wait_state(h, running, S.INACTIVE)
            jobid = running
        R = h.rpc("job-info.lookup", {"id": jobid, "keys": ["R"], "flags": 1}).get()["R"]
        assert R["scheduling"]["writer"] == "fluxion:jgf"
        R = h.rpc("job-info.update-lookup", {"id": jobid, "key": "R", "flags": 0}).get()["R"]
        assert "scheduling" in R and R["execution"]["nodelist"] == [HOST]
    f = h.rpc("job-manager.events-journal", {"full": True}, flags=STREAMING)
    seen = {}
    while True:
        r = f.get()
        f.reset()
        if r["id"] == -1:
            break
        seen[r["id"]] = r
    f.cancel()
    assert "scheduling" not in seen[running]["R"]
    assert seen[running]["R"]["execution"]["nodelist"] == [HOST]
    assert [e["name"] for e in seen[running]["events"]][-1] == "clean"
