"""job-list internals without a broker: JobData from eventlog entries, jobspec summaries,
constraint compilation, and the service's state indexes fed by a fake job manager
(including the cost of listing with 10,000+ jobs)."""

from __future__ import annotations

import errno

import pytest
from flux.core.errors import FluxError
from flux.core.job import states as S
from flux.core.job_list.constraint import compile_constraint
from flux.core.job_list.jobdata import ATTRS, JobData, jobspec_summary
from flux.core.job_list.service import JobListService
from flux.core.job_manager.job import Job
from flux.core.message import ROLE_OWNER, ROLE_USER, Message


def jobspec(nslots=1, cores=1, nnodes=0, exclusive=False, total=None, per_resource=None,
            name=None, queue=None, duration=0, command=("/usr/bin/hostname",)) -> dict:
    slot = {"type": "slot", "count": nslots, "label": "task",
            "with": [{"type": "core", "count": cores}]}
    res = [{"type": "node", "count": nnodes, "exclusive": exclusive, "with": [slot]}] \
        if nnodes else [slot]
    count = {"total": total} if total is not None else {"per_slot": 1}
    system: dict = {"duration": duration, "cwd": "/home/u"}
    if name:
        system["job"] = {"name": name}
    if queue:
        system["queue"] = queue
    if per_resource:
        system["shell"] = {"options": {"per-resource": per_resource}}
    return {"version": 1, "resources": res,
            "tasks": [{"command": list(command), "slot": "task", "count": count}],
            "attributes": {"system": system}}


def R(ranks: str, cores: str, hosts: list[str], expiration: float = 0.0) -> dict:
    return {"version": 1, "execution": {"R_lite": [{"rank": ranks, "children": {"core": cores}}],
                                        "nodelist": hosts, "starttime": 1.0,
                                        "expiration": expiration}}


def ev(name: str, ts: float, **ctx) -> dict:
    e = {"timestamp": ts, "name": name}
    if ctx:
        e["context"] = ctx
    return e


def run_through(jd: JobData, job: Job, t0: float = 100.0, status: int = 0,
                exception: dict | None = None) -> None:
    jd.apply(ev("submit", t0, userid=job.userid, urgency=16, flags=0, version=1))
    jd.apply(ev("validate", t0 + 1))
    jd.apply(ev("depend", t0 + 2))
    jd.apply(ev("priority", t0 + 3, priority=16))
    jd.apply(ev("alloc", t0 + 4))
    jd.apply(ev("start", t0 + 5))
    if exception:
        jd.apply(ev("exception", t0 + 6, **exception))
    jd.apply(ev("finish", t0 + 7, status=status))
    jd.apply(ev("release", t0 + 8, ranks="all", final=True))
    jd.apply(ev("free", t0 + 9))
    jd.apply(ev("clean", t0 + 10))


def mkjob(jobid: int = 1, userid: int = 1000, js: dict | None = None, Rv: dict | None = None) -> Job:
    j = Job(id=jobid, userid=userid, urgency=16, flags=0, t_submit=0.0,
            jobspec=js if js is not None else jobspec())
    j.R = Rv
    return j


# ------------------------------------------------------------------ JobData

def test_lifecycle_attributes_and_times():
    job = mkjob(js=jobspec(nslots=2, cores=2, name="sim", queue="batch", duration=60),
                Rv=R("0-1", "0-1", ["n[0-1]"], expiration=500.0))
    jd = JobData(job.id, job)
    jd.apply(ev("submit", 100.0, userid=1000, urgency=16, flags=0, version=1))
    d = jd.to_dict(ATTRS)
    # before it runs: no priority, no R-derived values, no result
    assert d == {"id": 1, "userid": 1000, "urgency": 16, "t_submit": 100.0, "state": S.NEW,
                 "name": "sim", "cwd": "/home/u", "queue": "batch", "ntasks": 2, "ncores": 4,
                 "duration": 60.0}
    run_through(jd, job)
    d = jd.to_dict(ATTRS)
    assert d["state"] == S.INACTIVE and d["result"] == S.COMPLETED and d["success"] is True
    assert (d["t_depend"], d["t_priority"], d["t_sched"], d["t_run"], d["t_cleanup"],
            d["t_inactive"]) == (101.0, 102.0, 103.0, 104.0, 107.0, 110.0)
    assert (d["ranks"], d["nodelist"], d["nnodes"], d["ncores"]) == ("[0-1]", "n[0-1]", 2, 4)
    assert d["expiration"] == 500.0 and d["waitstatus"] == 0 and d["priority"] == 16
    assert d["exception_occurred"] is False and "exception_type" not in d
    assert jd.states_mask == S.NEW | S.ACTIVE | S.INACTIVE


@pytest.mark.parametrize("exc,status,result", [
    ({"type": "cancel", "severity": 0, "note": "bye"}, 15, S.CANCELED),
    ({"type": "timeout", "severity": 0, "note": "resource allocation expired"}, 14 << 8,
     S.TIMEOUT),
    ({"type": "exec", "severity": 0, "note": "lost shell"}, 0, S.FAILED),
    (None, 3 << 8, S.FAILED),
    ({"type": "warn", "severity": 3, "note": "just a note"}, 0, S.COMPLETED),
])
def test_results(exc, status, result):
    job = mkjob(Rv=R("0", "0", ["n0"]))
    jd = JobData(job.id, job)
    run_through(jd, job, status=status, exception=exc)
    assert jd.result == result
    assert jd.success is (result == S.COMPLETED)
    assert jd.waitstatus == status
    if exc:
        d = jd.to_dict(["exception_occurred", "exception_type", "exception_severity",
                        "exception_note"])
        assert d == {"id": 1, "exception_occurred": True, "exception_type": exc["type"],
                     "exception_severity": exc["severity"], "exception_note": exc["note"]}


def test_most_severe_exception_is_kept():
    job = mkjob()
    jd = JobData(1, job)
    jd.apply(ev("submit", 1.0, userid=1, urgency=16))
    jd.apply(ev("exception", 2.0, type="a", severity=4, note="x"))
    jd.apply(ev("exception", 3.0, type="b", severity=0, note="fatal"))
    jd.apply(ev("exception", 4.0, type="c", severity=0, note="second fatal"))
    assert (jd.exc_type, jd.exc_severity, jd.state) == ("b", 0, S.CLEANUP)
    jd.apply(ev("clean", 5.0))
    assert jd.result == S.FAILED  # never finished


def test_dependencies_urgency_jobspec_update_resource_update():
    job = mkjob(js=jobspec(queue="debug"))
    jd = JobData(1, job)
    jd.apply(ev("submit", 1.0, userid=1, urgency=16))
    jd.apply(ev("validate", 2.0))
    jd.apply(ev("dependency-add", 2.1, description="after-finish=5"))
    jd.apply(ev("dependency-add", 2.2, description="begin-time=99.000"))
    assert jd.state == S.DEPEND and jd.get("dependencies") == ["after-finish=5", "begin-time=99.000"]
    jd.apply(ev("dependency-remove", 2.3, description="after-finish=5"))
    assert jd.get("dependencies") == ["begin-time=99.000"]
    jd.apply(ev("dependency-remove", 2.4, description="begin-time=99.000"))
    jd.apply(ev("depend", 3.0))
    jd.apply(ev("priority", 4.0, priority=7))
    jd.apply(ev("urgency", 5.0, urgency=3, userid=1))
    assert (jd.state, jd.urgency) == (S.PRIORITY, 3)
    jd.apply(ev("priority", 6.0, priority=3))
    jd.apply(ev("jobspec-update", 7.0, **{"attributes.system.queue": "batch",
                                          "attributes.system.duration": 30.0,
                                          "bogus.key": 1}))
    assert (jd.queue, jd.duration, jd.state) == ("batch", 30.0, S.PRIORITY)
    assert job.jobspec["attributes"]["system"]["queue"] == "debug"  # manager's copy untouched
    job.R = R("3", "0-3", ["n3"], expiration=50.0)
    jd.apply(ev("priority", 8.0, priority=3))
    jd.apply(ev("alloc", 9.0))
    jd.apply(ev("resource-update", 10.0, expiration=80.0))
    assert jd.get("expiration") == 80.0 and jd.get("ranks") == "3"


@pytest.mark.parametrize("js,ntasks,ncores,nnodes", [
    (jobspec(nslots=4, cores=2), 4, 8, None),
    (jobspec(nslots=2, cores=1, total=6), 6, 2, None),
    (jobspec(nslots=2, cores=3, nnodes=2), 4, 12, 2),
    (jobspec(nslots=1, cores=1, nnodes=2, exclusive=True), 2, None, 2),
    (jobspec(nslots=2, cores=2, per_resource={"type": "core", "count": 2}), 8, 4, None),
    (jobspec(nslots=1, cores=1, nnodes=3, per_resource={"type": "node", "count": 2}), 6, 3, 3),
    (jobspec(nslots=1, cores=4, per_resource={"type": "node", "count": 2}), None, 4, None),
])
def test_jobspec_counts(js, ntasks, ncores, nnodes):
    s = jobspec_summary(js)
    assert (s["ntasks"], s["ncores"], s["nnodes"]) == (ntasks, ncores, nnodes)


def test_counts_finished_by_R():
    # per-node tasks and node-exclusive cores are known only once R is
    js = jobspec(nslots=1, cores=1, nnodes=2, exclusive=True,
                 per_resource={"type": "core", "count": 1})
    job = mkjob(js=js, Rv=R("0-1", "0-7", ["a", "b"]))
    jd = JobData(1, job)
    assert (jd.ntasks, jd.ncores) == (None, None)
    run_through(jd, job)
    assert (jd.ntasks, jd.ncores, jd.nnodes, jd.nodelist) == (16, 16, 2, "a,b")


def test_name_and_bad_jobspec():
    assert jobspec_summary(jobspec(command=("/bin/sleep", "1")))["name"] == "sleep"
    assert jobspec_summary(jobspec(command=("dir/",)))["name"] == "dir/"
    bad = jobspec_summary({"version": 1, "tasks": "nope"})
    assert bad["name"] is None and bad["ntasks"] is None and bad["duration"] == 0.0


# --------------------------------------------------------------- constraints

def _jd(jobid=1, userid=1000, name="sim", queue=None, state_events=("validate",),
        result_status=None, ranks="0", hosts=("n0",), t0=100.0):
    job = mkjob(jobid, userid, jobspec(name=name, queue=queue), R(ranks, "0", list(hosts)))
    jd = JobData(jobid, job)
    if result_status is not None:
        run_through(jd, job, t0=t0, status=result_status)
        return jd
    jd.apply(ev("submit", t0, userid=userid, urgency=16))
    for i, n in enumerate(state_events):
        jd.apply(ev(n, t0 + i + 1, priority=16) if n == "priority" else ev(n, t0 + i + 1))
    return jd


def test_constraint_operators():
    pend = _jd(1, 1000, "a", "q1")
    run = _jd(2, 1001, "b", "q2", ("validate", "depend", "priority", "alloc"), ranks="1",
              hosts=["n1"])
    done = _jd(3, 1000, "a", None, result_status=0, t0=200.0)
    failed = _jd(4, 1002, "c", None, result_status=256, ranks="2", hosts=["n2"])
    jobs = [pend, run, done, failed]

    def sel(c):
        m, _ = compile_constraint(c)
        return [j.id for j in jobs if m(j)]

    assert sel(None) == sel({}) == sel({"and": []}) == sel({"or": []}) == [1, 2, 3, 4]
    assert sel({"not": []}) == []
    assert sel({"userid": [1000]}) == [1, 3]
    assert sel({"userid": [0xFFFFFFFF]}) == [1, 2, 3, 4]
    assert sel({"name": ["a", "c"]}) == [1, 3, 4]
    assert sel({"queue": ["q2"]}) == [2]
    assert sel({"states": ["pending"]}) == [1]
    assert sel({"states": [S.RUN | S.INACTIVE]}) == [2, 3, 4]
    assert sel({"states": ["sched", "INACTIVE"]}) == [3, 4]
    assert sel({"results": ["completed"]}) == [3]
    assert sel({"results": [S.FAILED, "canceled"]}) == [4]
    assert sel({"hostlist": ["n[1-2]"]}) == [2, 4]
    assert sel({"ranks": ["0-1"]}) == [2, 3]  # the pending job has no ranks yet
    assert sel({"t_submit": [">=200"]}) == [3]
    assert sel({"t_inactive": ["<1000"]}) == [3, 4]  # unset times never match
    assert sel({"t_run": [">0"]}) == [2, 3, 4]
    assert sel({"not": [{"userid": [1000]}]}) == [2, 4]
    assert sel({"or": [{"name": ["b"]}, {"and": [{"userid": [1000]},
                                                  {"states": ["inactive"]}]}]}) == [2, 3]


def test_constraint_state_hint():
    assert compile_constraint({"states": ["pending"]})[1] == S.PENDING
    assert compile_constraint({"results": ["failed"]})[1] == S.INACTIVE
    m = compile_constraint({"and": [{"userid": [1]}, {"states": [S.PENDING | S.RUNNING]}]})[1]
    assert m == S.PENDING | S.RUNNING
    assert compile_constraint({"or": [{"states": ["run"]}, {"results": ["completed"]}]})[1] \
        == S.RUN | S.INACTIVE
    assert compile_constraint({"not": [{"states": ["run"]}]})[1] & S.INACTIVE


@pytest.mark.parametrize("c,words", [
    ([], "JSON object"),
    ({"userid": 5}, "array"),
    ({"userid": ["me"]}, "integers"),
    ({"states": ["bogus"]}, "bogus"),
    ({"results": [{}]}, "results"),
    ({"t_submit": ["1234"]}, "must start with"),
    ({"t_submit": [">=abc"]}, "valid timestamp"),
    ({"t_submit": [">1", "<2"]}, "exactly one"),
    ({"hostlist": ["n[1-"]}, "hostlist"),
    ({"ranks": ["x"]}, "ranks"),
    ({"frob": []}, "unknown operator 'frob'"),
    ({"and": [1]}, "'and' entry 0"),
    ({"name": ["a"], "queue": ["b"]}, "exactly one operator"),
])
def test_constraint_errors(c, words):
    with pytest.raises(FluxError) as ei:
        compile_constraint(c)
    assert ei.value.errno == errno.EINVAL
    assert words in ei.value.strerror


# ------------------------------------------------ the service's state indexes

class FakeBroker:
    rank = 0
    conf: dict = {}

    def __init__(self):
        self.logs = []

    def log(self, level, text):
        self.logs.append(text)

    def log_exception(self, what, exc):
        self.logs.append(f"{what}: {exc!r}")


class FakeJM:
    def __init__(self):
        self.jobs, self.inactive, self.listeners = {}, {}, []

    def post(self, job, name, ts, **ctx):
        e = ev(name, ts, **ctx)
        job.eventlog.append(e)
        for cb in self.listeners:
            cb(job, e)


def make_service():
    b = FakeBroker()
    svc = JobListService(b)
    jm = FakeJM()
    b.job_manager = jm
    import asyncio

    asyncio.run(svc.start())
    return svc, jm


def feed(jm, jobid, t, final="pending", priority=16, userid=1000):
    job = mkjob(jobid, userid, jobspec(), R("0", "0", ["n0"]))
    jm.post(job, "submit", t, userid=userid, urgency=16, flags=0, version=1)
    jm.post(job, "validate", t)
    jm.post(job, "depend", t)
    jm.post(job, "priority", t, priority=priority)
    if final == "pending":
        return job
    jm.post(job, "alloc", t + 0.5)
    jm.post(job, "start", t + 0.5)
    if final == "running":
        return job
    jm.post(job, "finish", t + 1, status=0)
    jm.post(job, "clean", t + 1)
    return job


def test_service_order_stats_and_purge():
    svc, jm = make_service()
    feed(jm, 1, 1.0, "inactive")
    feed(jm, 2, 2.0, "inactive")
    feed(jm, 3, 3.0, "running")
    feed(jm, 4, 4.0, "running")
    feed(jm, 5, 5.0, "pending", priority=10)
    feed(jm, 6, 6.0, "pending", priority=20)
    feed(jm, 7, 7.0, "pending", priority=10)
    every, mask = compile_constraint(None)
    assert [j.id for j in svc.select(every, mask)] == [6, 5, 7, 4, 3, 2, 1]
    assert [j.id for j in svc.select(every, mask, max_entries=3)] == [6, 5, 7]
    assert [j.id for j in svc.select(every, mask, since=2.5)] == [6, 5, 7, 4, 3, 2]
    pend = compile_constraint({"states": ["pending"]})
    assert [j.id for j in svc.select(*pend)] == [6, 5, 7]
    # a priority change reorders the cached pending view
    job7 = next(j.job for j in svc.pending.values() if j.id == 7)
    jm.post(job7, "priority", 8.0, priority=30)
    assert [j.id for j in svc.select(*pend)] == [7, 6, 5]
    st = svc.stats.to_dict()
    assert st["job_states"] == {"new": 0, "depend": 0, "priority": 0, "sched": 3, "run": 2,
                                "cleanup": 0, "inactive": 2, "total": 7}
    assert st["successful"] == 2
    svc.on_event(None, {"name": "purge", "id": 1})
    assert [j.id for j in svc.select(every, mask)][-1] == 2
    st = svc.stats.to_dict()
    assert (st["inactive_purged"], st["job_states"]["inactive"], st["successful"]) == (1, 1, 1)


def test_listener_errors_are_contained():
    svc, jm = make_service()
    job = mkjob(9)
    # an entry without a name: logged, never raised into the job manager
    svc.on_event(job, {"timestamp": 1.0, "name": "submit", "context": "not-a-dict"})
    assert svc.broker.logs


def _msg(payload, rolemask=ROLE_OWNER, userid=0, streaming=False):
    m = Message.request("job-list.list", payload)
    m.rolemask, m.userid = rolemask, userid
    if streaming:
        from flux.core.message import FLAG_STREAMING

        m.flags |= FLAG_STREAMING
    return m


def test_list_handler_validation():
    svc, jm = make_service()
    feed(jm, 1, 1.0, "inactive")
    ok = svc.list_(_msg({"max_entries": 0, "attrs": ["name", "id"]}))
    assert ok == {"jobs": [{"id": 1, "name": "hostname"}]}
    for payload, words in [
        ({"attrs": []}, "max_entries"),
        ({"max_entries": -1, "attrs": []}, ">= 0"),
        ({"max_entries": 0}, "attrs"),
        ({"max_entries": 0, "attrs": ["bogus"]}, "bogus is not a valid attribute"),
        ({"max_entries": 0, "attrs": [], "since": -3}, "since"),
        ({"max_entries": 0, "attrs": [], "constraint": {"x": []}}, "unknown operator"),
    ]:
        with pytest.raises(FluxError) as ei:
            svc.list_(_msg(payload))
        assert words in ei.value.strerror


def test_private_mode_limits_guests():
    svc, jm = make_service()
    svc.private = True
    feed(jm, 1, 1.0, "inactive", userid=1000)
    feed(jm, 2, 2.0, "inactive", userid=2000)
    mine = svc.list_(_msg({"max_entries": 0, "attrs": []}, rolemask=ROLE_USER, userid=2000))
    assert mine == {"jobs": [{"id": 2}]}
    every = svc.list_(_msg({"max_entries": 0, "attrs": []}))
    assert [j["id"] for j in every["jobs"]] == [2, 1]


def test_ten_thousand_jobs_list_cheaply():
    """A listing looks at no more jobs than it returns and does not re-sort the queue per
    request (what makes `flux jobs` cheap with 10,000+ jobs; its speed is a benchmark)."""
    svc, jm = make_service()
    n = 12000
    for i in range(n):
        feed(jm, i + 1, float(i), ("inactive", "running", "pending")[i % 3], priority=i % 7)
    default = {"and": [{"userid": [1000]}, {"states": [S.PENDING | S.RUNNING]}]}
    match, mask = compile_constraint(default)
    looked = 0

    def counting(jd) -> bool:
        nonlocal looked
        looked += 1
        return match(jd)

    jobs = svc.select(counting, mask, max_entries=1001)
    assert looked == 1001  # stops at max_entries: every pending job matches
    out = [jd.to_dict(["userid", "state", "name", "ntasks", "nnodes", "t_run", "t_cleanup",
                       "duration", "annotations", "nodelist", "priority", "urgency",
                       "dependencies", "result"]) for jd in jobs]
    queue = svc.pending_sorted()
    again = svc.select(match, mask, max_entries=1001)
    assert svc.pending_sorted() is queue  # sorted once, reused until the queue changes
    assert [jd.id for jd in again] == [jd.id for jd in jobs]
    everything = svc.select(*compile_constraint(None))
    assert len(out) == 1001 and len(everything) == n
    assert out[0]["priority"] == 6  # highest priority first
    feed(jm, n + 1, float(n), "pending", priority=6)
    assert svc.pending_sorted() is not queue  # a new pending job re-sorts once


def test_invalidated_job_disappears():
    svc, jm = make_service()
    job = feed(jm, 1, 1.0, "pending")
    jm.post(job, "invalidate", 2.0)
    assert svc.select(*compile_constraint(None)) == []
    st = svc.stats.to_dict()
    assert st["job_states"]["total"] == 0 and st["inactive_purged"] == 0
