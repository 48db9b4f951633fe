"""PSI/J (psij-python) runs unmodified against our instance through its flux executor
(psij/executors/flux.py: flux.job.FluxExecutor, JobspecV1.from_command, the future's
jobid/event/done callbacks, flux.job.cancel_async, FluxExecutor.attach,
flux.job.job_list with flux.constants)."""

from __future__ import annotations

import datetime

import pytest

psij = pytest.importorskip("psij", reason="psij-python is not installed (pip install psij-python)")

WAIT = 30


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(1)
    yield i
    i.stop()


@pytest.fixture
def executor(inst, monkeypatch):
    # PSI/J connects with flux.Flux() and FluxExecutor(): the instance named by FLUX_URI
    monkeypatch.setenv("FLUX_URI", inst.uri)
    return psij.JobExecutor.get_instance("flux")


def _spec(*argv: str, **kw) -> psij.JobSpec:
    return psij.JobSpec(executable=argv[0], arguments=list(argv[1:]),
                        resources=psij.ResourceSpecV1(process_count=1, cpu_cores_per_process=1),
                        **kw)


def test_exit_codes_output_and_states(executor, tmp_path):
    import flux.job

    assert type(executor).__name__ == "FluxJobExecutor"  # psij loads it by name
    seen: dict[int, list[str]] = {}
    jobs = []
    for i in range(3):
        job = psij.Job(_spec("/bin/sh", "-c", f"cat; echo out {i}; echo err {i} >&2; exit {i}",
                             stdout_path=tmp_path / f"out{i}", stderr_path=tmp_path / f"err{i}",
                             stdin_path=tmp_path / "in"))
        seen[i] = []
        job.set_job_status_callback(lambda j, st, i=i: seen[i].append(st.state.name))
        jobs.append(job)
    (tmp_path / "in").write_text("from stdin\n")
    for job in jobs:
        executor.submit(job)
    for i, job in enumerate(jobs):
        status = job.wait(timeout=datetime.timedelta(seconds=WAIT))
        assert status is not None, f"job {i} did not finish"
        if i == 0:
            assert status.state == psij.JobState.COMPLETED
        else:
            assert status.state == psij.JobState.FAILED and status.exit_code == i
        assert (tmp_path / f"out{i}").read_text() == f"from stdin\nout {i}\n"
        assert (tmp_path / f"err{i}").read_text() == f"err {i}\n"
        # the native id is the Flux job id (the executor's jobid callback set it)
        assert flux.job.JobID(job.native_id) > 0
        assert seen[i][0] == "QUEUED" and "ACTIVE" in seen[i] and seen[i][-1] == status.state.name


def test_cancel_list_and_attach(executor):
    import flux
    import flux.job

    job = psij.Job(_spec("/bin/sleep", "30"))
    executor.submit(job)
    assert job.wait(timeout=datetime.timedelta(seconds=WAIT),
                    target_states=[psij.JobState.ACTIVE]) is not None
    # list(): the active jobs of the instance, by Flux job id
    jobid = flux.job.JobID(job.native_id)
    assert jobid in executor.list()

    # a second PSI/J executor attaches to the running job by its native id
    other = psij.JobExecutor.get_instance("flux")
    watcher = psij.Job()
    other.attach(watcher, job.native_id)

    job.cancel()  # FluxExecutorFuture.cancel() is False, so PSI/J cancels the job
    status = job.wait(timeout=datetime.timedelta(seconds=WAIT))
    assert status.state == psij.JobState.CANCELED
    assert "type=cancel" in status.message
    assert watcher.wait(timeout=datetime.timedelta(seconds=WAIT)).state == psij.JobState.CANCELED
    # the future completes at the exception; the job leaves the active list at clean
    flux.job.event_wait(flux.Flux(), jobid, "clean", raiseJobException=False)
    assert jobid not in executor.list()
    info = flux.job.get_job(flux.Flux(), jobid)
    assert info["result"] == "CANCELED"


def test_time_limit(executor):
    spec = _spec("/bin/sleep", "30")
    spec.attributes = psij.JobAttributes(duration=datetime.timedelta(seconds=1))
    job = psij.Job(spec)
    executor.submit(job)
    status = job.wait(timeout=datetime.timedelta(seconds=WAIT))
    assert status.state == psij.JobState.FAILED
    assert "type=timeout" in status.message
