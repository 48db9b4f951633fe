"""`flux.job.list`: query the `job-list` service (RFC 43).

    >>> import flux
    >>> from flux.job.list import JobList, job_list, get_job
    >>> h = flux.Flux()
    >>> for job in JobList(h, filters=["running"]).jobs():
    ...     print(job.id, job.name, job.nodelist)
    >>> job_list(h, max_entries=10, attrs=["name"]).get_jobs()
"""

from __future__ import annotations

import errno
import os
import pwd
from typing import Any

from flux.core.job import states as S
from flux.future import RPC
from flux.job.info import JobInfo
from flux.job.JobID import JobID

__all__ = ["JobList", "JobListIdRPC", "JobListIdsFuture", "JobListRPC", "get_job", "job_list",
           "job_list_id", "job_list_inactive"]

FLUX_USERID_UNKNOWN = 0xFFFFFFFF


class JobListRPC(RPC):
    """The future of `job-list.list`."""

    def get_jobs(self) -> list[dict]:
        """The jobs of the answer, as dicts."""
        return self.get()["jobs"]

    def get_jobinfos(self):
        """A JobInfo for each job."""
        for job in self.get_jobs():
            yield JobInfo(job)


class JobListIdRPC(RPC):
    """The future of `job-list.list-id`; `jobid` is the id as the caller gave it."""

    jobid: Any = None

    def get_job(self) -> dict:
        return self.get()["job"]

    def get_jobinfo(self) -> JobInfo:
        return JobInfo(self.get_job())


def _rpc(cls: type, handle: Any, topic: str, payload: dict) -> Any:
    # our handle makes the RPC future; give it the job-list accessors
    fut = handle.rpc(topic, payload)
    fut.__class__ = cls
    return fut


def _as_list(v: Any) -> list:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return list(v)


def job_list(flux_handle: Any, max_entries: int = 1000, attrs: list[str] | None = None,
             userid: int = os.getuid(), states: int = 0, results: int = 0, since: float = 0.0,
             name: str | None = None, queue: Any = None,
             constraint: dict | None = None) -> JobListRPC:
    """Ask for at most max_entries jobs (0: all) of user `userid` (FLUX_USERID_UNKNOWN:
    everyone) in `states` or with `results` (masks; 0: any), finished after `since`, of
    job name `name`, in queue(s) `queue`, and matching the RFC 31 `constraint`.
    Returns a JobListRPC (`get_jobs()`, `get_jobinfos()`)."""
    terms: list[dict] = []
    if userid != FLUX_USERID_UNKNOWN:
        terms.append({"userid": [int(userid)]})
    if name:
        terms.append({"name": [name]})
    queues = _as_list(queue)
    if queues:
        terms.append({"queue": queues})
    if states and results:
        terms.append({"or": [{"states": [states]}, {"results": [results]}]})
    elif states:
        terms.append({"states": [states]})
    elif results:
        terms.append({"results": [results]})
    if constraint:
        terms.append(constraint)
    payload = {"max_entries": int(max_entries), "attrs": list(attrs or ["all"]),
               "since": float(since), "constraint": {"and": terms}}
    return _rpc(JobListRPC, flux_handle, "job-list.list", payload)


def job_list_inactive(flux_handle: Any, since: float = 0.0, max_entries: int = 1000,
                      attrs: list[str] | None = None, name: str | None = None,
                      queue: Any = None) -> JobListRPC:
    """Inactive jobs of every user, most recently finished first."""
    return job_list(flux_handle, max_entries=max_entries, attrs=attrs,
                    userid=FLUX_USERID_UNKNOWN, states=S.INACTIVE, since=since, name=name,
                    queue=queue)


def job_list_id(flux_handle: Any, jobid: Any, attrs: list[str] | None = None) -> JobListIdRPC:
    """One job's attributes (`get_job()` dict or `get_jobinfo()`)."""
    rpc = _rpc(JobListIdRPC, flux_handle, "job-list.list-id",
               {"id": int(jobid), "attrs": list(attrs or ["all"])})
    rpc.jobid = jobid
    return rpc


def get_job(flux_handle: Any, jobid: Any) -> dict | None:
    """Everything job-list knows about one job as a dict (JobInfo.to_dict(filtered=False)),
    or None if there is no such job."""
    try:
        info = job_list_id(flux_handle, jobid).get_jobinfo()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return info.to_dict(filtered=False)


class JobListIdsFuture:
    """Several list-id requests, with the interface of JobListRPC; failures go to errors."""

    def __init__(self) -> None:
        self.children: list[JobListIdRPC] = []
        self.errors: list[str] = []

    def push(self, rpc: JobListIdRPC) -> None:
        self.children.append(rpc)

    def wait_for(self, timeout: float = -1.0) -> JobListIdsFuture:
        for child in self.children:
            child.wait_for(timeout)
        return self

    def get_jobs(self) -> list[dict]:
        jobs = []
        for child in self.children:
            try:
                jobs.append(child.get_job())
            except OSError as err:
                jid = child.jobid
                shown = getattr(jid, "orig", None) or str(jid)
                if err.errno == errno.ENOENT:
                    self.errors.append(f"JobID {shown} unknown")
                else:
                    self.errors.append(f"rpc: {err.strerror}")
        return jobs

    def get_jobinfos(self) -> list[JobInfo]:
        return [JobInfo(job) for job in self.get_jobs()]


class JobList:
    """Jobs of an instance, filtered by user, state/result, name, queue, time, ids.

    :param flux_handle: a flux.Flux handle
    :param attrs: job-list attributes to fetch (default all)
    :param filters: state and result names (`pending`, `running`, `inactive`, `sched`,
        `completed`, `failed`, ...; comma separated allowed)
    :param ids: job ids to list (the other filters are ignored then)
    :param user: user name or uid (default: the caller), or `all`
    :param max_entries: at most this many jobs (0: no limit)
    :param since: only jobs active since this time (epoch seconds)
    :param name: only jobs with this name
    :param queue: only jobs in this queue (or these queues)
    :param constraint: an extra RFC 31 constraint object
    """

    STATES = {"new": S.NEW, "depend": S.DEPEND, "priority": S.PRIORITY, "sched": S.SCHED,
              "run": S.RUN, "cleanup": S.CLEANUP, "inactive": S.INACTIVE,
              "pending": S.PENDING, "running": S.RUNNING, "active": S.ACTIVE}
    RESULTS = {"completed": S.COMPLETED, "failed": S.FAILED, "canceled": S.CANCELED,
               "cancelled": S.CANCELED, "timeout": S.TIMEOUT}

    def __init__(self, flux_handle: Any, attrs: list[str] | None = None,
                 filters: list[str] | tuple | set = (), ids: list | tuple = (),
                 user: Any = None, max_entries: int = 1000, since: float = 0.0,
                 name: str | None = None, queue: Any = None, constraint: dict | None = None):
        self.handle = flux_handle
        self.attrs = list(attrs) if attrs else ["all"]
        self.states = 0
        self.results = 0
        self.max_entries = max_entries
        self.since = since
        self.name = name
        self.queue = queue
        self.constraint = constraint
        self.ids = [JobID(i) for i in ids] if ids else None
        self.errors: list[str] = []
        for fname in filters:
            for x in fname.split(","):
                if x:
                    self.add_filter(x)
        self.set_user(user)

    def set_user(self, user: Any) -> None:
        """Only list jobs of `user` (name or uid), or every user's with `all`."""
        if user is None:
            self.userid = os.getuid()
        elif user == "all":
            self.userid = FLUX_USERID_UNKNOWN
        else:
            try:
                self.userid = pwd.getpwnam(str(user)).pw_uid
            except KeyError:
                try:
                    self.userid = int(user)
                except ValueError:
                    raise ValueError(f"Invalid user {user} specified") from None

    def add_filter(self, fname: str) -> None:
        """Add a state or result to list."""
        key = fname.strip().lower()
        if key in self.STATES:
            self.states |= self.STATES[key]
        elif key in self.RESULTS:
            self.results |= self.RESULTS[key]
        else:
            raise ValueError(f"Invalid filter specified: {fname}")

    def fetch_jobs(self) -> JobListRPC | JobListIdsFuture:
        """Send the query; the returned future's get_jobs() gives the job dicts."""
        if self.ids:
            fut = JobListIdsFuture()
            for jobid in self.ids:
                fut.push(job_list_id(self.handle, jobid, self.attrs))
            return fut
        return job_list(self.handle, max_entries=self.max_entries, attrs=self.attrs,
                        userid=self.userid, states=self.states, results=self.results,
                        since=self.since, name=self.name, queue=self.queue,
                        constraint=self.constraint)

    def jobs(self) -> list[JobInfo]:
        """The matching jobs as JobInfo objects (blocks until the answer arrives)."""
        rpc = self.fetch_jobs()
        jobs = rpc.get_jobs()
        if isinstance(rpc, JobListIdsFuture):
            self.errors = rpc.errors
        return [JobInfo(job) for job in jobs]
