"""flux.job.FluxExecutor: futures for real jobs (job shell), in the style of Flux's
FluxExecutor tutorial, plus the future's own semantics without an instance."""

from __future__ import annotations

import concurrent.futures
import gc
import socket
import threading

import pytest

HOST = socket.gethostname()
ONE_CORE = f'resource.config=[{{hosts="{HOST}", cores="0"}}]'
WAIT = 30  # seconds: a bound for waits that normally take milliseconds


def _js(*cmd: str):
    from flux.job import JobspecV1

    return JobspecV1.from_command(list(cmd))


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(1)
    yield i
    i.stop()


@pytest.fixture(scope="module")
def one_core():
    """An instance with one core, so a second job waits in SCHED."""
    from conftest import Instance

    i = Instance(1, conf=[ONE_CORE])
    yield i
    i.stop()


@pytest.fixture
def ex(inst):
    from flux.job import FluxExecutor

    with FluxExecutor(handle_args=(inst.uri,)) as executor:
        yield executor


# ------------------------------------------------------- futures on their own


def test_future_jobid_and_callbacks_without_executor():
    from flux.job import EventLogEvent, FluxExecutorFuture

    fut = FluxExecutorFuture(threading.get_ident())
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.jobid(timeout=0)
    seen = []
    fut.add_jobid_callback(lambda f: seen.append(("id", f.jobid())))
    fut._set_jobid(1234)
    fut.add_jobid_callback(lambda f: seen.append(("late", f.jobid())))  # runs at once
    assert seen == [("id", 1234), ("late", 1234)]
    with pytest.raises(concurrent.futures.InvalidStateError):
        fut._set_jobid(99)

    start = EventLogEvent({"timestamp": 1.0, "name": "start"})
    fut._set_event(start)
    events = []
    fut.add_event_callback("start", lambda f, e: events.append(e.name))  # replayed
    fut._set_event(EventLogEvent({"timestamp": 2.0, "name": "start"}))
    assert events == ["start", "start"]
    with pytest.raises(ValueError, match="unknown job event 'bogus'"):
        fut.add_event_callback("bogus", lambda f, e: None)
    assert {"submit", "alloc", "start", "finish", "clean", "exception"} <= fut.EVENTS


def test_future_waiting_from_its_own_thread_is_refused():
    from flux.job import FluxExecutorFuture

    fut = FluxExecutorFuture(threading.get_ident())  # "owned" by this thread
    with pytest.raises(RuntimeError, match="inside callback"):
        fut.result()
    with pytest.raises(RuntimeError, match="inside callback"):
        fut.exception()
    fut.set_result(0)
    assert fut.result() == 0  # done: no deadlock possible


def test_future_cancelled_before_submission_and_failed_before_jobid():
    from flux.job import FluxExecutorFuture

    fut = FluxExecutorFuture(None)
    assert fut.cancel() and fut.cancel()  # a second call is fine too
    assert fut.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.jobid()

    failed = FluxExecutorFuture(None)
    failed.set_running_or_notify_cancel()
    failed.set_exception(OSError(22, "bad jobspec"))
    with pytest.raises(RuntimeError, match="could not be submitted due to .*bad jobspec"):
        failed.jobid(timeout=0)
    bad_cb = []
    failed.add_done_callback(lambda f: bad_cb.append(1) or 1 / 0)  # logged, not raised
    assert bad_cb == [1]


def test_executor_argument_errors(inst):
    from flux.job import FluxExecutor

    with pytest.raises(ValueError, match="threads"):
        FluxExecutor(threads=0)
    with pytest.raises(ValueError, match="poll_interval"):
        FluxExecutor(poll_interval=0)
    with pytest.raises(OSError, match="Unable to connect"):
        FluxExecutor(handle_args=("local:///nonexistent/socket",))
    with FluxExecutor(handle_args=(inst.uri,)) as ex, \
            pytest.raises(ValueError, match="invalid job id"):
        ex.attach("not-a-jobid")


# ------------------------------------------------------------ tutorial flow


def test_tutorial_submit_results_and_events(ex):
    """Several jobs, their exit codes, and start/clean callbacks."""
    from flux.job import FluxExecutorFuture

    cmds = [("true",), ("sh", "-c", "exit 3"), ("sh", "-c", "echo hi"), ("false",)]
    futures = [ex.submit(_js(*c)) for c in cmds]
    assert all(isinstance(f, FluxExecutorFuture) for f in futures)
    started, cleaned = {}, {}
    all_clean = threading.Event()
    lock = threading.Lock()

    def on_clean(fut, event):
        with lock:
            cleaned[fut.jobid()] = event
            if len(cleaned) == len(futures):
                all_clean.set()

    for f in futures:
        f.add_event_callback("start", lambda fut, e: started.setdefault(fut.jobid(), e))
        f.add_event_callback("clean", on_clean)
    done, _ = concurrent.futures.wait(futures, timeout=WAIT)
    assert len(done) == len(futures)
    assert [f.result() for f in futures] == [0, 3, 0, 1]
    assert all_clean.wait(WAIT)
    ids = [f.jobid() for f in futures]
    assert len(set(ids)) == 4 and all(i > 0 for i in ids)
    assert set(started) == set(ids) == set(cleaned)
    assert all(started[i].timestamp <= cleaned[i].timestamp for i in ids)


def test_as_completed_and_done_callbacks_run_in_the_executor_thread(ex):
    futures = [ex.submit(_js("true")) for _ in range(5)]
    names = []
    for f in futures:
        f.add_done_callback(lambda fut: names.append(threading.current_thread().name))
    results = [f.result() for f in concurrent.futures.as_completed(futures, timeout=WAIT)]
    assert results == [0] * 5
    assert len(names) == 5 and all(n.startswith("FluxExecutor-") for n in names)


def test_submit_keywords_as_flux_job_submit(ex, inst):
    fut = ex.submit(jobspec=_js("true"), urgency=20, waitable=True)
    assert fut.result(timeout=WAIT) == 0
    with inst.handle() as h:
        import flux.job

        assert flux.job.wait(h, fut.jobid()).success  # it was waitable
    urg = ex.submit(_js("true"), urgency=7)
    prio = threading.Event()
    urg.add_event_callback("priority", lambda f, e: prio.set())
    assert urg.result(timeout=WAIT) == 0 and prio.is_set()


def test_job_that_fails_to_start_gets_job_exception(ex):
    from flux.job import JobException

    fut = ex.submit(_js("/nonexistent/command"))
    finish = []
    fut.add_event_callback("finish", lambda f, e: finish.append(e.context["status"]))
    exc = fut.exception(timeout=WAIT)
    assert isinstance(exc, JobException)
    assert exc.type == "exec" and exc.severity == 0
    assert "/nonexistent/command" in exc.note
    with pytest.raises(JobException, match="type=exec"):
        fut.result()
    assert fut.jobid() > 0  # the job exists; it just could not start
    clean = threading.Event()
    fut.add_event_callback("clean", lambda f, e: clean.set())
    assert clean.wait(WAIT)
    assert finish == [127 << 8]


def test_invalid_jobspec_and_bad_arguments_fail_the_future(ex):
    bad = ex.submit({"version": 1, "tasks": []})  # rejected by ingest
    exc = bad.exception(timeout=WAIT)
    assert isinstance(exc, OSError) and "resources" in str(exc)
    with pytest.raises(RuntimeError, match="could not be submitted"):
        bad.jobid(timeout=WAIT)
    wrong = ex.submit(42)  # not a jobspec at all
    assert isinstance(wrong.exception(timeout=WAIT), TypeError)
    urgency = ex.submit(_js("true"), urgency=99)
    assert "urgency" in str(urgency.exception(timeout=WAIT))
    assert ex.submit(_js("true")).result(timeout=WAIT) == 0  # the executor still works


def test_attach_existing_inactive_and_running_jobs(ex, inst):
    import flux.job

    with inst.handle() as h:
        done_id = flux.job.submit(h, _js("sh", "-c", "exit 5"))
        flux.job.event_wait(h, done_id, "clean")
        running_id = flux.job.submit(h, _js("sh", "-c", "sleep 0.3; exit 2"))
    # any id form: JobID, int, f58 string, decimal string
    for form in (done_id, int(done_id), done_id.f58, str(int(done_id))):
        fut = ex.attach(form)
        assert fut.jobid(timeout=0) == done_id
        assert fut.result(timeout=WAIT) == 5
    events = []
    att = ex.attach(running_id)
    att.add_event_callback("submit", lambda f, e: events.append(e.name))
    assert att.result(timeout=WAIT) == 2
    assert events == ["submit"]  # past events reach late callbacks too


def test_attach_unknown_job(ex):
    fut = ex.attach(123456789)
    with pytest.raises(ValueError, match="does not match any job"):
        fut.result(timeout=WAIT)


def test_shutdown_refuses_new_work_and_waits(inst):
    from flux.job import FluxExecutor

    ex = FluxExecutor(handle_args=(inst.uri,), thread_name_prefix="shut")
    futures = [ex.submit(_js("sh", "-c", "sleep 0.2")) for _ in range(2)]
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures) and [f.result() for f in futures] == [0, 0]
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("shut-"))
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(_js("true"))
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.attach(1)
    ex.shutdown()  # twice is fine
    with pytest.raises(NotImplementedError, match="jobspecs"):
        ex.map(print, [1])


def test_several_threads_and_handle_kwargs(inst):
    from flux.job import FluxExecutor

    with FluxExecutor(threads=3, thread_name_prefix="trio",
                      handle_kwargs={"url": inst.uri}) as ex:
        futures = [ex.submit(_js("true")) for _ in range(6)]
        by_ident = {t.ident: t.name for t in threading.enumerate()}
        assert [f.result(timeout=WAIT) for f in futures] == [0] * 6
    # dealt in turn: each thread owns (completes) two of the futures
    owners = [by_ident[f._owner] for f in futures]
    assert owners == ["trio-0", "trio-1", "trio-2"] * 2


def test_collected_executor_stops_its_threads(inst):
    from flux.job import FluxExecutor

    ex = FluxExecutor(handle_args=(inst.uri,), thread_name_prefix="orphan")
    fut = ex.submit(_js("true"))
    threads = list(ex._threads)
    del ex
    gc.collect()  # the finalizer waits for the submitted job
    assert fut.done() and fut.result() == 0
    assert not any(t.is_alive() for t in threads)


# ----------------------------------------------------------------- cancel


def test_cancel_a_pending_job(one_core):
    """As in flux-core (and concurrent.futures): cancel() of a future whose job is
    submitted returns False and the job runs on; the job itself is cancelled with
    flux.job.cancel_async(handle, future.jobid()), as PSI/J does."""
    import flux
    from flux.job import FluxExecutor, JobException, cancel_async

    h = flux.Flux(one_core.uri)
    with FluxExecutor(handle_args=(one_core.uri,)) as ex:
        blocker = ex.submit(_js("sleep", "30"))
        started = threading.Event()
        blocker.add_event_callback("start", lambda f, e: started.set())
        assert started.wait(WAIT)
        pending = ex.submit(_js("true"))
        pending_started = []
        pending.add_event_callback("start", lambda f, e: pending_started.append(e))
        pending.jobid(timeout=WAIT)
        assert not pending.done()
        assert pending.cancel() is False and not pending.cancelled()
        assert not pending.done()  # still waiting for its core: not cancelled by that
        cancel_async(h, pending.jobid()).get()
        exc = pending.exception(timeout=WAIT)
        assert isinstance(exc, JobException) and exc.type == "cancel"
        assert pending_started == []

        # right after submit: either cancelled before the thread took it up (it is
        # never submitted), or submitted (cancel() is False) and then it runs
        quick = ex.submit(_js("true"))
        if quick.cancel():
            assert quick.cancelled()
            with pytest.raises(concurrent.futures.CancelledError):
                quick.jobid(timeout=WAIT)
        else:
            assert not quick.cancelled()
            cancel_async(h, blocker.jobid()).get()  # frees the core for it
            assert quick.result(timeout=WAIT) == 0

        # a running job: cancel() does nothing; cancelling the job ends it
        assert blocker.cancel() is False
        cancel_async(h, blocker.jobid()).get()
        exc = blocker.exception(timeout=WAIT)
        assert isinstance(exc, JobException) and exc.type == "cancel"


def test_shutdown_cancel_futures(one_core):
    from flux.job import FluxExecutor

    ex = FluxExecutor(handle_args=(one_core.uri,))
    fut = ex.submit(_js("true"))
    ex.shutdown(wait=True, cancel_futures=True)
    # taken up already (it ran) or cancelled while queued: never left hanging
    assert fut.done()
    assert fut.cancelled() or fut.result() == 0


# ----------------------------------------------------------- lost instance


def test_instance_loss_fails_futures_and_breaks_executor(make_instance):
    from flux.job import FluxExecutor

    i = make_instance(1)
    ex = FluxExecutor(handle_args=(i.uri,))
    fut = ex.submit(_js("sleep", "30"))
    started = threading.Event()
    fut.add_event_callback("start", lambda f, e: started.set())
    assert started.wait(WAIT)
    import os
    import signal

    with open(f"/proc/{i.proc.pid}/task/{i.proc.pid}/children") as f:
        broker = int(f.read().split()[0])  # flux start's child is the rank 0 broker
    os.kill(broker, signal.SIGKILL)  # the instance goes away with its socket
    exc = fut.exception(timeout=WAIT)
    assert isinstance(exc, OSError)
    ex._threads[0].join(WAIT)
    with pytest.raises(RuntimeError, match="broken"):
        ex.submit(_js("true"))
    ex.shutdown()


# ------------------------------------------------------------- throughput


@pytest.mark.slow
def test_throughput_500_true_jobs_32_cores(make_instance):
    import time

    from flux.job import FluxExecutor

    i = make_instance(1, conf=[f'resource.config=[{{hosts="{HOST}", cores="0-31"}}]'])
    js = _js("true")
    t0 = time.perf_counter()
    with FluxExecutor(handle_args=(i.uri,)) as ex:
        futures = [ex.submit(js) for _ in range(500)]
        codes = [f.result(timeout=120) for f in futures]
    rate = 500 / (time.perf_counter() - t0)
    print(f"FluxExecutor: 500 jobs of true on 32 cores at {rate:.0f} jobs/s")
    assert codes == [0] * 500
    assert len({f.jobid() for f in futures}) == 500
