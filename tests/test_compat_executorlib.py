"""executorlib runs unmodified against our instance with its Flux backend
(executorlib/task_scheduler/interactive/spawner_flux.py: flux.job.FluxExecutor,
JobspecV1.from_command / from_nest_command, the future's jobid/cancel/result,
flux.resource.list.resource_list(handle).get().up.ncores)."""

from __future__ import annotations

import os
import socket

import pytest

executorlib = pytest.importorskip("executorlib",
                                  reason="executorlib is not installed (pip install executorlib)")

HOST = socket.gethostname()
TWO_CORES = f'resource.config=[{{hosts="{HOST}", cores="0-1"}}]'
WAIT = 60


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(1, conf=[TWO_CORES])
    yield i
    i.stop()


@pytest.fixture
def env(inst, monkeypatch, tmp_path):
    from conftest import BIN

    monkeypatch.setenv("FLUX_URI", inst.uri)
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.chdir(tmp_path)
    return inst


@pytest.fixture(autouse=True)
def _by_value():
    """The workers cannot import this test module: pickle its functions by value."""
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def where(x):
    """Runs inside a Flux job: the value, the job's id, and its task rank."""
    import os

    return x, os.environ["FLUX_JOB_ID"], os.environ["FLUX_TASK_RANK"]


def fail(msg):
    raise RuntimeError(msg)


def test_block_allocation_workers_are_flux_jobs(env):
    import flux
    import flux.job

    with executorlib.FluxJobExecutor(max_workers=2, block_allocation=True) as exe:
        futs = [exe.submit(where, i) for i in range(6)]
        results = [f.result(timeout=WAIT) for f in futs]
    assert [r[0] for r in results] == list(range(6))
    workers = {flux.job.JobID(r[1]) for r in results}
    assert 1 <= len(workers) <= 2  # the two workers are the only jobs that ran them
    h = flux.Flux()
    for jobid in workers:  # each worker was a real job of the instance, now done
        info = flux.job.get_job(h, jobid)
        assert info["state"] == "INACTIVE" and info["result"] == "COMPLETED"


def test_one_job_per_call_with_errors_and_resources(env):
    with executorlib.FluxJobExecutor() as exe:
        ok = exe.submit(where, 7, resource_dict={"cores": 1, "cwd": os.getcwd()})
        bad = exe.submit(fail, "boom")
        assert ok.result(timeout=WAIT)[0] == 7
        with pytest.raises(RuntimeError, match="boom"):
            bad.result(timeout=WAIT)


def test_explicit_flux_executor_and_core_count_check(env):
    import flux.job

    with flux.job.FluxExecutor() as flux_exe:
        with executorlib.FluxJobExecutor(flux_executor=flux_exe, max_workers=1,
                                         block_allocation=True) as exe:
            assert exe.submit(sum, [1, 2, 3]).result(timeout=WAIT) == 6
    # validate_max_workers(): resource_list(handle).get().up.ncores is 2 here
    with pytest.raises(ValueError, match="larger than the available cores 2 < 3"):
        executorlib.FluxJobExecutor(max_workers=3, block_allocation=True)


def level():
    """Runs in a worker: the Flux instance it talks to, seen from inside."""
    import flux

    h = flux.Flux()
    return h.attr_get("instance-level"), h.attr_get("size")


def test_nested_workers_run_in_child_instances(env):
    """flux_executor_nesting=True: each worker is a job running its own child instance
    (JobspecV1.from_nest_command), and the function talks to that instance."""
    with executorlib.FluxJobExecutor(flux_executor_nesting=True,
                                     resource_dict={"cores": 1}) as exe:
        assert exe.submit(level).result(timeout=WAIT) == ("1", "1")
