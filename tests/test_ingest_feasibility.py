"""The `feasibility` ingest validator (plugins/ingest-feasibility): a request that can
never fit the instance is rejected at submit with the scheduler's reason; without a
feasibility service everything is accepted."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket

import flux.kvs
import pytest
from conftest import Instance
from flux.core.errors import FluxError
from flux.core.job.fluid import kvs_key
from flux.core.security.sign import wrap_none
from flux_ingest_feasibility.plugin import FeasibilityCheck, ingest_validate

HOST = socket.gethostname()


def jobspec(nslots: int = 1, cores: int = 1, gpus: int = 0, nnodes: int = 0) -> dict:
    slot = {"type": "slot", "count": nslots, "label": "task",
            "with": [{"type": "core", "count": cores}]}
    if gpus:
        slot["with"].append({"type": "gpu", "count": gpus})
    res = [{"type": "node", "count": nnodes, "with": [slot]}] if nnodes else [slot]
    return {"version": 1, "resources": res,
            "tasks": [{"command": ["true"], "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": {"duration": 0,
                                      "exec": {"test": {"run_duration": "0s"}}}}}


def submit(h, js, flags: int = 4) -> int:
    J = wrap_none(json.dumps(js).encode(), os.getuid())
    return h.rpc("job-ingest.submit", {"J": J, "urgency": 16, "flags": flags}).get()["id"]


# ------------------------------------------------------------------ unit

class FakeBroker:
    def __init__(self, exc: FluxError | None):
        self.exc = exc
        self.calls: list = []

    def rpc(self, topic, payload):
        self.calls.append((topic, payload))

        async def answer():
            if self.exc is not None:
                raise self.exc
            return {}

        return answer()


def test_check_is_lazy_and_maps_errors():
    js = jobspec()
    b = FakeBroker(None)
    check = ingest_validate(jobspec=js, instance=b)
    assert isinstance(check, FeasibilityCheck)
    assert b.calls == []  # nothing is sent until the ingest service awaits it
    asyncio.run(_await(check))
    assert b.calls == [("feasibility.check", {"jobspec": js})]
    # ENOSYS: no feasibility service -> accepted
    asyncio.run(_await(ingest_validate(jobspec=js, instance=FakeBroker(
        FluxError(errno.ENOSYS, "No service matching feasibility.check")))))
    # any other error rejects with the scheduler's text and errno
    with pytest.raises(FluxError) as ei:
        asyncio.run(_await(ingest_validate(jobspec=js, instance=FakeBroker(
            FluxError(errno.EOVERFLOW, "unsatisfiable request: too big")))))
    assert (ei.value.errno, ei.value.strerror) == (errno.EOVERFLOW, "unsatisfiable request: too big")


async def _await(aw):
    return await aw


# ------------------------------------------------------------ real broker

@pytest.fixture(scope="module")
def inst():
    # the wording checked below is the simple scheduler's (the graph's: test_sched_graph.py)
    i = Instance(1, conf=[f'resource.config=[{{hosts="{HOST}", cores="0-3"}}]', 'sched.module="simple"'])
    yield i
    i.stop()


@pytest.mark.parametrize("shape,words", [
    ({"nslots": 5}, ["unsatisfiable request", "5 slots", "4 cores"]),
    ({"nslots": 1, "cores": 8}, ["unsatisfiable request", "8 cores"]),
    ({"nslots": 1, "gpus": 1}, ["unsatisfiable request", "gpu"]),
    ({"nslots": 1, "nnodes": 2}, ["unsatisfiable request", "2 nodes", "has 1"]),
])
def test_infeasible_request_is_rejected_at_submit(inst, shape, words):
    h = inst.handle()
    try:
        before = h.rpc("job-manager.getinfo").get()["max_jobid"]
        with pytest.raises(FluxError) as ei:
            submit(h, jobspec(**shape))
        for w in words:
            assert w in ei.value.strerror, ei.value.strerror
        # nothing half-made: no job id was handed to the job manager
        assert h.rpc("job-manager.getinfo").get()["max_jobid"] == before
    finally:
        h.close()


def test_feasible_request_runs(inst):
    h = inst.handle()
    try:
        jobid = submit(h, jobspec(nslots=4))
        assert h.rpc("job-manager.wait", {"id": jobid}).get()["success"] is True
        # the batch form: one infeasible job does not spoil the others
        J1 = wrap_none(json.dumps(jobspec(nslots=64)).encode(), os.getuid())
        J2 = wrap_none(json.dumps(jobspec(nslots=2)).encode(), os.getuid())
        r = h.rpc("job-ingest.submit", {"jobs": [{"J": J1, "flags": 4},
                                                  {"J": J2, "flags": 4}]}).get()["jobs"]
        assert "requested 64 slots" in r[0]["errstr"]
        assert h.rpc("job-manager.wait", {"id": r[1]["id"]}).get()["success"] is True
    finally:
        h.close()


def test_no_feasibility_service_accepts():
    """With no scheduler loaded there is no feasibility service (ENOSYS): accepted."""
    i = Instance(1, conf=['sched.module="no-such-scheduler"'])
    try:
        h = i.handle()
        jobid = submit(h, jobspec(nslots=1000), flags=0)
        assert jobid > 0
        # accepted and stored: its eventlog reached the submit event
        assert flux.kvs.exists(h, kvs_key(jobid, "eventlog"), namespace="primary")
        h.rpc("job-manager.raise", {"id": jobid, "type": "cancel", "severity": 0,
                                    "note": "test over"}).get()
        h.close()
    finally:
        i.stop()


def test_runs_after_the_local_validators():
    """jobspec is tryfirst and feasibility trylast: the RPC is the last check awaited,
    so a jobspec the local validators reject never reaches the scheduler."""
    from flux.core.plugins import call_each, load_group

    pm, _ = load_group("flux.ingest")
    b = FakeBroker(None)
    bad = jobspec()
    bad["tasks"] = []
    order = [name for name, _res, _exc in call_each(pm, "ingest_validate", jobspec=bad, userid=0,
                                                    urgency=16, flags=0, config={}, instance=b)]
    assert order[0] == "jobspec" and order[-1] == "feasibility", order
    assert b.calls == []  # the returned check was never awaited: nothing sent
