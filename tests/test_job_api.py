"""flux.job submission, waiting, events and signals against a real instance."""

from __future__ import annotations

import errno
import os

import pytest


def _jobspec(duration: str = "0.01s", command=("true",)):
    from flux.job import JobspecV1

    js = JobspecV1.from_command(list(command))
    if duration is not None:
        js.setattr("system.exec.test.run_duration", duration)
    return js


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(1)
    yield i
    i.stop()


@pytest.fixture
def h(inst):
    with inst.handle() as handle:
        yield handle


# ------------------------------------------------------------------ units


def test_eventlog_event_parses_lines_and_dicts():
    from flux.job import EventLogEvent

    ev = EventLogEvent('{"timestamp":1.5,"name":"submit","context":{"urgency":16}}\n')
    assert (ev.name, ev.timestamp, ev.context) == ("submit", 1.5, {"urgency": 16})
    assert ev.context_string == '{"urgency":16}'
    assert str(ev).startswith("1.50000: submit")
    bare = EventLogEvent({"timestamp": 2.0, "name": "clean"})
    assert bare.context == {} and bare.context_string == ""
    with pytest.raises(ValueError, match="name and timestamp"):
        EventLogEvent('{"name":"x"}')
    with pytest.raises(ValueError, match="not valid JSON"):
        EventLogEvent("{nope")


def test_job_exception_fields():
    from flux.job import EventLogEvent, JobException

    exc = JobException(EventLogEvent({"timestamp": 3.0, "name": "exception",
                                      "context": {"type": "cancel", "severity": 0, "note": "bye"}}))
    assert (exc.type, exc.severity, exc.note, exc.timestamp) == ("cancel", 0, "bye", 3.0)
    assert str(exc) == "job.exception: type=cancel: bye"


def test_module_names_match_flux_core():
    import flux.job
    import flux.job.event
    import flux.job.submit
    import flux.job.wait

    # the functions win over the submodules of the same name, as in flux-core
    assert callable(flux.job.submit) and callable(flux.job.wait)
    assert flux.job.event.JobException is flux.job.JobException
    for name in ("submit_async", "submit_get_id", "wait_async", "result", "result_async",
                 "event_watch", "event_watch_async", "event_wait", "cancel", "cancel_async",
                 "kill", "kill_async", "job_raise", "MAIN_EVENTS"):
        assert hasattr(flux.job, name), name


# ------------------------------------------------------------ submission


def test_submit_returns_jobid_in_every_form(h):
    import flux.job
    from flux.job import JobID

    js = _jobspec()
    for spec in (js, js.dumps(), js.dumps().encode(), js.jobspec):
        jobid = flux.job.submit(h, spec, waitable=True)
        assert isinstance(jobid, JobID) and jobid > 0
        assert flux.job.wait(h, jobid).success


def test_submit_rejects_bad_arguments(h):
    import flux.job

    with pytest.raises(TypeError, match="jobspec must be"):
        flux.job.submit(h, 42)
    with pytest.raises(OSError, match="urgency must be an integer 0-31"):
        flux.job.submit(h, _jobspec(), urgency=32)
    with pytest.raises(OSError) as ei:
        flux.job.submit(h, '{"version": 1}')
    assert ei.value.errno == errno.EINVAL


def test_submit_async_then_callback(h):
    import flux.job

    got = []
    fut = flux.job.submit_async(h, _jobspec(), waitable=True)
    fut.then(lambda f: got.append(f.get_id()))
    h.reactor_run()
    assert len(got) == 1 and got[0] > 0
    assert flux.job.wait(h, got[0]).jobid == got[0]


def test_submit_batch_accepts_and_rejects_each_job(h):
    import flux.job

    good = _jobspec().dumps()
    ids = flux.job.submit_batch_async(h, [good, '{"version":1}', good], waitable=True).get_ids()
    assert isinstance(ids[1], OSError) and ids[1].errno == errno.EINVAL
    for jobid in (ids[0], ids[2]):
        assert flux.job.wait(h, jobid).success


def test_urgency_hold_keeps_job_pending_then_cancel(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec(), urgency=0)
    flux.job.event_wait(h, jobid, "priority")
    flux.job.cancel(h, jobid, "not today")
    with pytest.raises(flux.job.JobException) as ei:
        flux.job.event_wait(h, jobid, "start")
    assert ei.value.type == "cancel" and ei.value.note == "not today"
    info = flux.job.result(h, jobid)
    assert info.result == "CANCELED" and info.returncode == -128
    assert info.t_run == 0.0 or not info.t_run


# --------------------------------------------------------------- waiting


def test_wait_any_returns_each_waitable_job_once(h):
    import flux.job

    ids = {flux.job.submit(h, _jobspec(), waitable=True) for _ in range(3)}
    seen = {flux.job.wait(h).jobid for _ in range(3)}
    assert seen == ids
    with pytest.raises(OSError) as ei:
        flux.job.wait(h)
    assert ei.value.errno == errno.ECHILD


def test_wait_on_unwaitable_job_fails(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec())
    with pytest.raises(OSError, match="waitable"):
        flux.job.wait(h, jobid)
    flux.job.event_wait(h, jobid, "clean")


def test_wait_reports_failure(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec(duration="30s"), waitable=True)
    flux.job.event_wait(h, jobid, "start")
    flux.job.job_raise(h, jobid, "test", 0, "forced")
    res = flux.job.wait(h, jobid)
    assert not res.success and "type=test" in res.errstr


def test_result_of_completed_job(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec())
    info = flux.job.result(h, jobid)
    assert info.id == jobid and info.result == "COMPLETED" and info.result_abbrev == "CD"
    assert info.returncode == 0 and info.waitstatus == 0
    assert info.t_submit <= info.t_run <= info.t_cleanup and info.runtime >= 0
    d = flux.job.result_async(h, jobid).get_dict()  # again, after the job ended
    assert d["result"] == 1 and d["exception_occurred"] is False


def test_result_async_then_and_unknown_job(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec())
    got = []
    flux.job.result_async(h, jobid).then(lambda f: got.append(f.get_info().result))
    h.reactor_run()
    assert got == ["COMPLETED"]
    with pytest.raises(OSError) as ei:
        flux.job.result(h, 12345)
    assert ei.value.errno == errno.ENOENT


# ---------------------------------------------------------------- events


def test_event_watch_yields_the_whole_eventlog(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec())
    names = [ev.name for ev in flux.job.event_watch(h, jobid)]
    assert names[0] == "submit" and names[-1] == "clean"
    for expected in ("validate", "depend", "priority", "alloc", "start", "finish", "release",
                     "free"):
        assert expected in names
    assert set(names) <= flux.job.MAIN_EVENTS


def test_event_watch_async_in_reactor_and_early_cancel(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec(duration="30s"))
    seen = []

    def cb(f):
        ev = f.get_event()
        if ev is None:
            seen.append(None)
            return
        seen.append(ev.name)
        if ev.name == "start":
            f.cancel()  # the stream then ends with ENODATA

    flux.job.event_watch_async(h, jobid).then(cb)
    h.reactor_run()
    assert seen[-2:] == ["start", None]
    flux.job.cancel(h, jobid)
    assert flux.job.event_wait(h, jobid, "clean", raiseJobException=False).name == "clean"


def test_event_wait_missing_event_and_exception_flag(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec())
    with pytest.raises(OSError) as ei:
        flux.job.event_wait(h, jobid, "no-such-event")
    assert ei.value.errno == errno.ENODATA
    held = flux.job.submit(h, _jobspec(), urgency=0)
    flux.job.cancel(h, held)
    ev = flux.job.event_wait(h, held, "clean", raiseJobException=False)
    assert ev.name == "clean"


def test_event_watch_unknown_job(h):
    import flux.job

    with pytest.raises(OSError) as ei:
        list(flux.job.event_watch(h, 987654321))
    assert ei.value.errno == errno.ENOENT


# --------------------------------------------------------------- signals


def test_kill_requires_running_job_and_raise_nonfatal(h):
    import flux.job

    jobid = flux.job.submit(h, _jobspec(duration="30s"))
    with pytest.raises(OSError):
        flux.job.kill(h, 999999)
    flux.job.event_wait(h, jobid, "start")
    flux.job.job_raise(h, jobid, "warning", 4, "just saying")
    ev = flux.job.event_wait(h, jobid, "exception")
    assert ev.context["severity"] == 4 and ev.context["note"] == "just saying"
    flux.job.cancel(h, jobid)
    assert flux.job.result(h, jobid).result == "CANCELED"


@pytest.mark.skipif(not os.path.exists("/bin/sleep"), reason="needs /bin/sleep")
def test_kill_signals_real_tasks(h):
    import flux.job
    from flux.job import JobspecV1

    js = JobspecV1.from_command(["sleep", "30"])
    jobid = flux.job.submit(h, js)
    flux.job.event_wait(h, jobid, "start")
    flux.job.kill(h, jobid, 9)
    info = flux.job.result(h, jobid)
    assert info.result == "FAILED"
    assert info.returncode in (137, -9)
