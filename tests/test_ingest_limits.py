"""The `limits` ingest plugin (plugins/ingest-limits): defaults, queue names and site
limits from `[policy]`/`[queues]`, as hook calls and through a configured broker."""

from __future__ import annotations

import errno
import json
import os

import flux.kvs
import pytest
from conftest import Instance
from flux.core.errors import FluxError
from flux.core.job.fluid import kvs_key
from flux.core.security.sign import wrap_none
from flux_ingest_limits.plugin import (
    ConfigError,
    ingest_frobnicate,
    ingest_validate,
    parse_config,
)


def jobspec(nslots: int = 1, cores: int = 1, gpus: int = 0, nnodes: int = 0,
            duration: float = 0.0, queue: str | None = None) -> dict:
    slot = {"type": "slot", "count": nslots, "label": "task",
            "with": [{"type": "core", "count": cores}]}
    if gpus:
        slot["with"].append({"type": "gpu", "count": gpus})
    res = [{"type": "node", "count": nnodes, "with": [slot]}] if nnodes else [slot]
    system = {"duration": duration, "exec": {"test": {"run_duration": "0s"}}}
    if queue is not None:
        system["queue"] = queue
    return {"version": 1, "resources": res,
            "tasks": [{"command": ["true"], "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": system}}


def run(js: dict, conf: dict) -> dict:
    """Frobnicate then validate, as the ingest service does; the jobspec as stored."""
    ingest_frobnicate(jobspec=js, config=conf)
    ingest_validate(jobspec=js, config=conf)
    return js


def reject(js: dict, conf: dict) -> str:
    with pytest.raises(ValueError) as ei:
        run(js, conf)
    return str(ei.value)


# ------------------------------------------------------------------ unit

def test_no_policy_changes_nothing():
    js = jobspec()
    before = json.dumps(js)
    assert json.dumps(run(js, {})) == before
    assert parse_config({}).trivial


def test_duration_limit_and_default():
    conf = {"policy": {"limits": {"duration": "1h"},
                       "jobspec": {"defaults": {"system": {"duration": "10m"}}}}}
    assert run(jobspec(), conf)["attributes"]["system"]["duration"] == 600.0
    assert run(jobspec(duration=3600), conf)["attributes"]["system"]["duration"] == 3600
    msg = reject(jobspec(duration=7200), conf)
    assert msg == "duration 2h exceeds the limit of 1h (policy.limits.duration)"
    # with no default, an unlimited (0) duration exceeds any limit
    conf = {"policy": {"limits": {"duration": "1h"}}}
    assert reject(jobspec(), conf) == "duration unlimited exceeds the limit of 1h (policy.limits.duration)"


def test_queue_limits_override_general():
    conf = {"policy": {"limits": {"duration": "1h", "job-size": {"max": {"ncores": 4}}}},
            "queues": {"batch": {"policy": {"limits": {"duration": "0",
                                                       "job-size": {"max": {"ncores": -1}}}}},
                       "debug": {"policy": {"limits": {"duration": "30s"},
                                            "jobspec": {"defaults": {"system": {"duration": "10s"}}}}},
                       "plain": {}}}
    # batch: unlimited duration and size
    run(jobspec(nslots=64, queue="batch"), conf)
    # debug: its own duration limit and default, the general size limit
    assert run(jobspec(queue="debug"), conf)["attributes"]["system"]["duration"] == 10.0
    assert reject(jobspec(duration=60, queue="debug"), conf) == (
        "duration 1m exceeds the limit of 30s (queues.debug.policy.limits.duration)")
    assert reject(jobspec(nslots=5, duration=1, queue="debug"), conf) == (
        "requested ncores (5) exceeds the limit of 4 (policy.limits.job-size.max.ncores)")
    # plain: the general limits
    assert "policy.limits.duration" in reject(jobspec(duration=7200, queue="plain"), conf)


def test_unknown_and_missing_queue():
    conf = {"queues": {"batch": {}, "debug": {}}}
    assert reject(jobspec(queue="nope"), conf) == (
        "queue 'nope' does not exist; configured queues: batch, debug")
    msg = reject(jobspec(), conf)
    assert "no queue specified" in msg and "batch, debug" in msg
    conf = {"queues": {"batch": {}, "debug": {}},
            "policy": {"jobspec": {"defaults": {"system": {"queue": "debug"}}}}}
    assert run(jobspec(), conf)["attributes"]["system"]["queue"] == "debug"
    # no queues configured: naming one is an error
    assert "no queues configured" in reject(jobspec(queue="batch"), {})


@pytest.mark.parametrize("limits,shape,msg", [
    ({"max": {"nnodes": 1}}, {"nnodes": 2}, "requested nnodes (2) exceeds the limit of 1"),
    ({"min": {"nnodes": 2}}, {"nnodes": 1}, "requested nnodes (1) is below the minimum of 2"),
    ({"min": {"nnodes": 1}}, {}, "requested nnodes (0) is below the minimum of 1"),
    ({"max": {"ncores": 3}}, {"nslots": 2, "cores": 2}, "requested ncores (4) exceeds the limit of 3"),
    ({"min": {"ncores": 4}}, {"nslots": 3}, "requested ncores (3) is below the minimum of 4"),
    ({"max": {"ngpus": 1}}, {"nslots": 2, "gpus": 1}, "requested ngpus (2) exceeds the limit of 1"),
    ({"max": {"ngpus": 0}}, {"gpus": 1}, "requested ngpus (1) exceeds the limit of 0"),
])
def test_job_size_limits(limits, shape, msg):
    conf = {"policy": {"limits": {"job-size": limits}}}
    got = reject(jobspec(**shape), conf)
    assert got.startswith(msg) and "policy.limits.job-size." in got, got


def test_job_size_within_limits_accepted():
    conf = {"policy": {"limits": {"job-size": {"max": {"nnodes": 2, "ncores": 8, "ngpus": 2},
                                               "min": {"ncores": 2}}}}}
    run(jobspec(nslots=1, cores=4, gpus=1, nnodes=2), conf)  # 2 slots: 8 cores, 2 gpus
    run(jobspec(nslots=2), conf)


@pytest.mark.parametrize("conf,words", [
    ({"policy": {"limits": {"duration": 1.0}}}, ["policy.limits.duration", "string"]),
    ({"policy": {"limits": {"duration": "xyz123"}}}, ["policy.limits.duration", "xyz123"]),
    ({"policy": {"limits": {"job-size": {"max": {"nnodes": -42}}}}},
     ["policy.limits.job-size.max.nnodes", "-1 (unlimited)"]),
    ({"policy": {"limits": {"job-size": {"max": {"nodes": 1}}}}},
     ["policy.limits.job-size.max.nodes: unknown key"]),
    ({"queues": {"debug": {"policy": {"limits": {"duration": "xyz"}}}}},
     ["queues.debug.policy.limits.duration"]),
    ({"queues": {"a": {}}, "policy": {"jobspec": {"defaults": {"system": {"queue": "b"}}}}},
     ["'b' is not a configured queue", "queues: a"]),
    ({"policy": {"limits": []}}, ["policy.limits must be a table"]),
])
def test_bad_config_rejects_every_job_naming_the_key(conf, words):
    with pytest.raises(ConfigError):
        parse_config(conf)
    msg = reject(jobspec(), conf)
    assert msg.startswith("instance configuration error: ")
    for w in words:
        assert w in msg, msg


def test_malformed_jobspec_left_to_the_jobspec_validator():
    conf = {"policy": {"limits": {"job-size": {"max": {"ncores": 1}}}}}
    js = jobspec()
    js["resources"] = "junk"
    run(js, conf)  # no exception from this plugin: ingest-jobspec reports it
    js = jobspec()
    js["attributes"] = []
    run(js, conf)


# ------------------------------------------------------------ real broker

CONF = ['policy.limits.duration="1h"',
        'policy.limits.job-size.max.ncores=2',
        'policy.jobspec.defaults.system.duration="10m"',
        'policy.jobspec.defaults.system.queue="batch"',
        'queues.batch={}',
        'queues.debug.policy.limits.duration="30s"',
        'queues.debug.policy.limits.job-size.max.ncores=1']


@pytest.fixture(scope="module")
def inst():
    i = Instance(1, conf=CONF)
    yield i
    i.stop()


def submit(h, js: dict, flags: int = 4) -> int:
    J = wrap_none(json.dumps(js).encode(), os.getuid())
    return h.rpc("job-ingest.submit", {"J": J, "urgency": 16, "flags": flags}).get()["id"]


def test_defaults_are_stored_in_the_jobspec(inst):
    h = inst.handle()
    try:
        jobid = submit(h, jobspec())
        assert h.rpc("job-manager.wait", {"id": jobid}).get()["success"] is True
        stored = flux.kvs.get(h, kvs_key(jobid, "jobspec"), namespace="primary")
        assert stored["attributes"]["system"]["queue"] == "batch"
        assert stored["attributes"]["system"]["duration"] == 600.0
    finally:
        h.close()


@pytest.mark.parametrize("shape,expect", [
    ({"duration": 7200}, "duration 2h exceeds the limit of 1h (policy.limits.duration)"),
    ({"queue": "debug", "duration": 60},
     "duration 1m exceeds the limit of 30s (queues.debug.policy.limits.duration)"),
    ({"queue": "nope"}, "queue 'nope' does not exist; configured queues: batch, debug"),
    ({"nslots": 4}, "requested ncores (4) exceeds the limit of 2 (policy.limits.job-size.max.ncores)"),
    ({"queue": "debug", "nslots": 2, "duration": 5},
     "requested ncores (2) exceeds the limit of 1 (queues.debug.policy.limits.job-size.max.ncores)"),
])
def test_submit_rejected_by_limits(inst, shape, expect):
    h = inst.handle()
    try:
        with pytest.raises(FluxError) as ei:
            submit(h, jobspec(**shape))
        assert ei.value.errno == errno.EINVAL
        assert ei.value.strerror == expect
    finally:
        h.close()


def test_submit_within_queue_limits_runs(inst):
    h = inst.handle()
    try:
        jobid = submit(h, jobspec(queue="debug", duration=20))
        assert h.rpc("job-manager.wait", {"id": jobid}).get()["success"] is True
    finally:
        h.close()
