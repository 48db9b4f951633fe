"""The `jobspec` ingest validator (plugins/ingest-jobspec): messages for bad jobspecs,
its cost per job, and rejection through a real broker's job-ingest.submit."""

from __future__ import annotations

import copy
import errno
import json
import os

import pytest
from conftest import Instance
from flux.core.errors import FluxError
from flux.core.security.sign import wrap_none
from flux_ingest_jobspec.plugin import ingest_validate


def good(**system) -> dict:
    """A V1 jobspec as `flux submit -N2 -n4 -c2` builds it, with the caller's environment."""
    sys_attrs = {"duration": 0.0, "cwd": "/tmp", "environment": dict(os.environ),
                 "shell": {"options": {"rlimit": {"nofile": 1024}}}}
    sys_attrs.update(system)
    return {"version": 1,
            "resources": [{"type": "node", "count": 2, "with": [
                {"type": "slot", "count": 2, "label": "task",
                 "with": [{"type": "core", "count": 2}]}]}],
            "tasks": [{"command": ["app", "--flag"], "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": sys_attrs}}


def rejected(js) -> str:
    with pytest.raises(ValueError) as ei:
        ingest_validate(jobspec=js, config={})
    return str(ei.value)


def test_valid_jobspec_is_accepted():
    assert ingest_validate(jobspec=good(), config={}) is None
    js = good()
    js["resources"] = [{"type": "slot", "count": 3, "label": "task",
                        "with": [{"type": "core", "count": 1}, {"type": "gpu", "count": 1}]}]
    assert ingest_validate(jobspec=js, config={}) is None


def _mutate(path, value):
    js = good()
    d = js
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return js


@pytest.mark.parametrize("path,value,words", [
    (("resources",), [], ["resources must be a non-empty array"]),
    (("resources",), "node", ["resources must be a non-empty array", "string"]),
    (("tasks",), KeyError, ["missing required key 'tasks'"]),
    (("version",), 2, ["version must be 1"]),
    (("resources", 0, "type"), "socket", ["unknown resource type 'socket'", "resources[0]"]),
    (("resources", 0, "count"), 0, ["resources[0].count must be >= 1", "node", "not 0"]),
    (("resources", 0, "count"), -3, ["resources[0].count must be >= 1", "not -3"]),
    (("resources", 0, "count"), "2", ["must be an integer in jobspec V1"]),
    (("tasks", 0, "command"), KeyError, ["tasks[0] is missing required key 'command'"]),
    (("tasks", 0, "command"), [], ["tasks[0].command must be a non-empty array"]),
    (("tasks", 0, "command"), ["ok", 3], ["tasks[0].command[1] must be a string"]),
    (("tasks", 0, "slot"), "other", ["does not match the label of any slot"]),
    (("attributes", "system", "duration"), -1, ["duration must be a finite number >= 0", "-1"]),
    (("attributes", "system", "duration"), "1h", ["duration must be a number of seconds"]),
    (("attributes", "system", "duration"), float("inf"), ["duration must be a finite number"]),
    (("attributes", "system", "duration"), KeyError, ["duration is required"]),
    (("attributes", "system", "environment"), {"A": 1}, ["environment['A'] must be a string"]),
    (("attributes", "system"), KeyError, ["attributes.system is required"]),
])
def test_bad_jobspec_message_names_problem(path, value, words):
    msg = rejected(_mutate(path, value))
    assert msg.startswith("invalid jobspec: ")
    for w in words:
        assert w in msg, msg


def test_bad_shape_and_nested_counts():
    js = good()
    js["resources"][0]["with"][0]["with"][0]["count"] = 0
    assert "resources[0].with[0].with[0].count must be >= 1 for core, not 0" in rejected(js)
    js = good()
    js["resources"][0]["with"] = [{"type": "core", "count": 1}]
    assert "node must contain exactly one slot" in rejected(js)
    assert "jobspec must be an object" in rejected([1, 2])


def test_require_version_config():
    canonical = good()
    canonical["version"] = 2
    canonical["resources"][0]["type"] = "socket"
    assert "version must be 1" in rejected(canonical)
    conf = {"ingest": {"jobspec": {"require-version": "any"}}}
    assert ingest_validate(jobspec=canonical, config=conf) is None
    with pytest.raises(ValueError, match="require-version must be 1 or \"any\""):
        ingest_validate(jobspec=canonical, config={"ingest": {"jobspec": {"require-version": 7}}})


# ------------------------------------------------------------ through a broker

@pytest.fixture(scope="module")
def inst():
    i = Instance(1)
    yield i
    i.stop()


def submit(h, js, flags: int = 0) -> int:
    J = wrap_none(json.dumps(js).encode(), os.getuid())
    return h.rpc("job-ingest.submit", {"J": J, "urgency": 16, "flags": flags}).get()["id"]


def test_submit_rejects_invalid_jobspec_with_message(inst):
    h = inst.handle()
    try:
        bad = good()
        bad["resources"][0]["with"][0]["with"][0]["type"] = "memory"
        with pytest.raises(FluxError) as ei:
            submit(h, bad)
        assert ei.value.errno == errno.EINVAL
        assert "unknown resource type 'memory'" in ei.value.strerror
        # the batch form answers each job on its own
        J_bad = wrap_none(json.dumps(bad).encode(), os.getuid())
        ok = good(exec={"test": {"run_duration": "0s"}})
        ok["resources"] = [{"type": "slot", "count": 1, "label": "task",
                            "with": [{"type": "core", "count": 1}]}]
        J_ok = wrap_none(json.dumps(ok).encode(), os.getuid())
        r = h.rpc("job-ingest.submit", {"jobs": [{"J": J_bad}, {"J": J_ok, "flags": 4}]}).get()
        assert r["jobs"][0]["errnum"] == errno.EINVAL
        assert "unknown resource type 'memory'" in r["jobs"][0]["errstr"]
        jobid = r["jobs"][1]["id"]
        assert h.rpc("job-manager.wait", {"id": jobid}).get()["success"] is True
        # novalidate (owner only) skips the validators
        nv = copy.deepcopy(ok)
        nv["tasks"][0]["extra"] = 1
        jobid = submit(h, nv, flags=4 | 8)
        assert h.rpc("job-manager.wait", {"id": jobid}).get()["id"] == jobid
    finally:
        h.close()
