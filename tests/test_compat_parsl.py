"""Parsl runs unmodified with its FluxExecutor (parsl/executors/flux/): the executor
starts its own instance with `flux start python flux_instance_manager.py ...` (which
sends back flux.__file__'s package path and attr_get("local-uri"), then drains the
queue with job-manager.drain), connects flux.job.FluxExecutor(handle_args=(uri,)) to
it and runs each app as a job built by JobspecV1.from_command (cwd, environment,
stdout/stderr files); an app's result comes back through the job's exit code and a
pickle file."""

from __future__ import annotations

import os

import pytest

parsl = pytest.importorskip("parsl", reason="parsl is not installed (pip install parsl)")
pytest.importorskip("parsl.executors.flux.executor")

WAIT = 60


def square(x):
    return x * x


def boom():
    raise ValueError("boom from a flux job")


def in_job():
    import os

    return os.environ["FLUX_JOB_ID"], len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_parsl_flux_executor(tmp_path, monkeypatch):
    """Parsl's executor driven as Parsl's own test_flux.py drives it (the DataFlowKernel
    adds nothing Flux-specific on top of executor.submit)."""
    import concurrent.futures

    from conftest import BIN
    from parsl.executors import FluxExecutor

    # the executor finds `flux` on PATH and starts a new instance with it
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.delenv("FLUX_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    # the jobs unpickle this module's functions by reference, as in Parsl's own tests
    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))

    with FluxExecutor(working_dir=str(tmp_path / "wd")) as executor:
        executor.start()
        futs = [executor.submit(square, {}, i) for i in range(3)]
        failing = executor.submit(boom, {})
        placed = executor.submit(in_job, {"cores_per_task": 2})
        assert [f.result(timeout=WAIT) for f in futs] == [0, 1, 4]
        with pytest.raises(ValueError, match="boom from a flux job"):
            failing.result(timeout=WAIT)
        jobid, ncpus = placed.result(timeout=WAIT)
        assert jobid.startswith("ƒ") and ncpus == min(2, len(os.sched_getaffinity(0)))
        # each app ran as a job writing its stdout/stderr files in the working dir
        assert (tmp_path / "wd" / "4_stderr.txt").exists()

        # cancel() as Parsl's test_cancel checks it: a task is either cancelled before
        # its job is submitted, or it runs and completes normally
        later = [executor.submit(square, {}, i) for i in range(3)]
        for i, f in enumerate(later):
            if f.cancel():
                assert f.cancelled() and f.done()
                with pytest.raises(concurrent.futures.CancelledError):
                    f.result()
            else:
                assert not f.cancelled()
                assert f.result(timeout=WAIT) == i * i
