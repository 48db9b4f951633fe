"""flux.job.JournalConsumer: the job manager's journal (history, sentinel, live
events) against a real instance, by poll() and by callback."""

from __future__ import annotations

import errno
import os

import pytest

WAIT = 30.0  # seconds: bound for waits that normally take milliseconds


def _js(*cmd: str):
    from flux.job import JobspecV1

    return JobspecV1.from_command(list(cmd))


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


def _run(h, *cmd: str) -> int:
    import flux.job

    jobid = flux.job.submit(h, _js(*cmd))
    flux.job.event_wait(h, jobid, "clean")
    return jobid


def _poll_until(consumer, pred, limit: int = 10000) -> list:
    """Events up to and including the first one matching pred."""
    out = []
    for _ in range(limit):
        ev = consumer.poll(timeout=WAIT)
        out.append(ev)
        if ev is None or pred(ev):
            return out
    raise AssertionError("predicate never matched")


# ------------------------------------------------------------------- units


def test_journal_event_and_sentinel():
    from flux.job import JobID, JournalEvent
    from flux.job.journal import SENTINEL_EVENT

    ev = JournalEvent(1234, {"timestamp": 5.25, "name": "alloc", "context": {"x": 1}},
                      R={"version": 1})
    assert (ev.jobid, ev.name, ev.timestamp, ev.context, ev.R, ev.jobspec) == \
        (1234, "alloc", 5.25, {"x": 1}, {"version": 1}, None)
    assert isinstance(ev.jobid, JobID) and not ev.is_empty()
    assert str(ev) == f'{JobID(1234).f58}: 5.25000 alloc {{"x":1}}'
    assert SENTINEL_EVENT.is_empty() and SENTINEL_EVENT.jobid == -1
    assert SENTINEL_EVENT.name == "" and "name" not in SENTINEL_EVENT
    assert str(SENTINEL_EVENT) == "-1: End of historical data stream"
    with pytest.raises(ValueError):
        JournalEvent(1, {"name": "x"})  # a named event needs its timestamp


def test_poll_before_start_and_bad_since(h):
    from flux.job import JournalConsumer

    c = JournalConsumer(h)
    with pytest.raises(RuntimeError, match="before start"):
        c.poll()
    with pytest.raises(RuntimeError, match="before start"):
        c.stop()
    with pytest.raises(ValueError, match="since"):
        JournalConsumer(h, since="yesterday")


# ------------------------------------------------------- history and live


def test_backlog_sentinel_then_live_events(h):
    from flux.job import JournalConsumer

    a = _run(h, "true")
    b = _run(h, "sh", "-c", "exit 2")
    c = JournalConsumer(h, include_sentinel=True).start()
    history = _poll_until(c, lambda e: e.is_empty())
    assert history[-1] is c.SENTINEL_EVENT
    history = history[:-1]
    stamps = [e.timestamp for e in history]
    assert stamps == sorted(stamps)  # the replay is time ordered
    for jobid in (a, b):
        names = [e.name for e in history if e.jobid == jobid]
        assert names[0] == "submit" and names[-1] == "clean"
        assert {"alloc", "start", "finish", "free"} <= set(names)
    submit = next(e for e in history if e.jobid == a and e.name == "submit")
    assert submit.jobspec["tasks"][0]["command"] == ["true"]
    alloc = next(e for e in history if e.jobid == a and e.name == "alloc")
    assert alloc.R is not None and alloc.R["version"] == 1
    finish_b = next(e for e in history if e.jobid == b and e.name == "finish")
    assert finish_b.context["status"] == 2 << 8

    # live: a new job's events arrive in order, with jobspec and R attached
    import flux.job

    new = flux.job.submit(h, _js("true"))
    live = _poll_until(c, lambda e: e.jobid == new and e.name == "clean")
    mine = [e for e in live if e.jobid == new]
    assert [e.name for e in mine][0] == "submit" and mine[0].jobspec is not None
    assert any(e.name == "alloc" and e.R is not None for e in mine)
    assert not any(e.jobid in (a, b) for e in live)  # no history repeated

    c.stop()
    assert _poll_until(c, lambda e: False)[-1] is None
    assert c.poll(timeout=0) is None  # stays ended


def test_sentinel_is_suppressed_by_default_and_since_skips_old_events(h):
    from flux.job import JournalConsumer

    old = _run(h, "true")
    first = JournalConsumer(h).start()
    history = _poll_until(first, lambda e: e.jobid == old and e.name == "clean")
    assert not any(e.is_empty() for e in history)
    first.stop()
    last = history[-1].timestamp

    new = _run(h, "true")
    again = JournalConsumer(h, since=last).start()
    ev = again.poll(timeout=WAIT)  # the first event newer than `since`
    assert ev.jobid == new and ev.name == "submit" and ev.timestamp > last
    again.stop()


def test_full_false_gives_only_new_events(h):
    import flux.job
    from flux.job import JournalConsumer

    _run(h, "true")
    c = JournalConsumer(h, full=False, include_sentinel=True).start()
    # the journal request reaches the job manager before this submission does
    new = flux.job.submit(h, _js("true"))
    ev = c.poll(timeout=WAIT)
    assert (ev.jobid, ev.name) == (new, "submit")
    c.stop()
    rest = _poll_until(c, lambda e: False)
    assert rest[-1] is None and not any(e is not None and e.is_empty() for e in rest)
    flux.job.event_wait(h, new, "clean")  # quiet for the next test


def test_poll_timeout(h):
    from flux.job import JournalConsumer

    c = JournalConsumer(h, full=False).start()
    with pytest.raises(TimeoutError):
        c.poll(timeout=0.05)
    c.stop()


def test_callback_mode_with_reactor(h):
    import flux.job
    from flux.job import JournalConsumer

    done_before = _run(h, "true")
    seen: list = []
    state = {}

    def on_event(event, tag, consumer=None):
        seen.append(event)
        assert tag == "t"
        if event is None:
            return
        if event.is_empty():
            # history is over: start a job and follow it live
            state["new"] = flux.job.submit_async(h, _js("true"))
        elif "new" in state and event.jobid == state["new"].get_id() and event.name == "clean":
            consumer.stop()

    c = JournalConsumer(h, include_sentinel=True)
    c.set_callback(on_event, "t", consumer=c)
    c.start()
    h.reactor_run()
    assert seen[-1] is None
    empty = [i for i, e in enumerate(seen) if e is not None and e.is_empty()]
    assert len(empty) == 1
    history, live = seen[:empty[0]], seen[empty[0] + 1:-1]
    assert any(e.jobid == done_before and e.name == "clean" for e in history)
    new = state["new"].get_id()
    assert [e.name for e in live if e.jobid == new][-1] == "clean"
    assert [e.timestamp for e in history] == sorted(e.timestamp for e in history)


def test_set_callback_after_start(h):
    from flux.job import JournalConsumer

    _run(h, "true")
    c = JournalConsumer(h).start()
    got = []

    def cb(event):
        got.append(event)
        if event is not None and event.name == "clean":
            c.stop()

    c.set_callback(cb)
    h.reactor_run()
    assert got[-1] is None and any(e is not None and e.name == "clean" for e in got)
    with pytest.raises(TypeError):
        c.set_callback("not callable")


def test_journal_is_for_the_instance_owner(inst, monkeypatch):
    from flux.job import JournalConsumer

    monkeypatch.setenv("FLUX_HANDLE_USERID", str(os.getuid() + 31000))
    monkeypatch.setenv("FLUX_HANDLE_ROLEMASK", "2")
    with inst.handle() as guest:
        c = JournalConsumer(guest).start()
        with pytest.raises(OSError) as info:
            c.poll(timeout=WAIT)
        assert info.value.errno == errno.EPERM


def test_flux_core_cancel_topic_ends_the_stream(h):
    """job-manager.events-journal-cancel (what flux-core's consumer sends) works."""
    from flux.job import JournalConsumer

    c = JournalConsumer(h, full=False).start()
    h.rpc("job-manager.events-journal-cancel", {"matchtag": c.rpc.matchtag}, flags=1)
    assert c.poll(timeout=WAIT) is None
