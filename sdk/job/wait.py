"""Waiting for jobs: :func:`wait` (``job-manager.wait``, waitable jobs only) and
:func:`result` (any job, computed from its eventlog as flux-core's
``flux_job_result()`` does)."""

from __future__ import annotations

import errno
import time
from collections import namedtuple

from flux.future import RPC, Future
from flux.job.event import EventLogEvent, event_watch_async
from flux.job.JobID import FLUX_JOBID_ANY, JobID

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from flux.handle import Flux

__all__ = [
    "JobResultFuture",
    "JobWaitFuture",
    "JobWaitResult",
    "result",
    "result_async",
    "wait",
    "wait_async",
    "wait_get_status",
]

JobWaitResult = namedtuple("JobWaitResult", "jobid, success, errstr")

RESULT_COMPLETED, RESULT_FAILED, RESULT_CANCELED, RESULT_TIMEOUT = 1, 2, 4, 8


class JobWaitFuture(RPC):
    def get_status(self) -> JobWaitResult:
        """(jobid, success, errstr) of the job once it is inactive."""
        return wait_get_status(self)


def wait_async(flux_handle: Flux, jobid: int = FLUX_JOBID_ANY) -> JobWaitFuture:
    """Ask to be told when a waitable job (or, by default, any waitable job) ends.

    Only jobs submitted with ``waitable=True`` can be waited for, and each only once."""
    fut = flux_handle.rpc("job-manager.wait", {"id": int(jobid)})
    fut.__class__ = JobWaitFuture
    return fut


def wait_get_status(future: JobWaitFuture) -> JobWaitResult:
    if future is None:
        raise OSError(errno.EINVAL, "future must not be None")
    resp = RPC.get(future)
    return JobWaitResult(JobID(resp["id"]), bool(resp.get("success")), resp.get("errstr", ""))


def wait(flux_handle: Flux, jobid: int = FLUX_JOBID_ANY) -> JobWaitResult:
    """Block until a waitable job ends; OSError ECHILD if there is none to wait for."""
    return wait_async(flux_handle, jobid).get_status()


def _result_calc(res: dict) -> int:
    if res.get("t_run", 0) > 0 and res.get("waitstatus") == 0:
        return RESULT_COMPLETED
    if res.get("exception_occurred"):
        if res.get("exception_type") == "cancel":
            return RESULT_CANCELED
        if res.get("exception_type") == "timeout":
            return RESULT_TIMEOUT
    return RESULT_FAILED


class JobResultFuture(Future):
    """Fulfilled with the result dict once the job's eventlog is complete:
    ``{id, t_submit, t_run?, t_cleanup?, waitstatus?, exception_occurred,
    exception_type?, exception_note?, exception_severity?, result}``."""

    def __init__(self, flux_handle: Flux, jobid: int):
        super().__init__(flux_handle)
        self._res: dict = {"id": int(jobid), "exception_occurred": False}
        self._watch = event_watch_async(flux_handle, jobid)

    def _consume(self) -> None:
        """Apply every event already received, without blocking."""
        watch = self._watch
        while not self._values and watch.is_ready():
            try:
                event = watch.get_event()
            except OSError as exc:
                self.fulfill_error(exc.errno or errno.EPROTO, exc.strerror)
                return
            if event is None:
                self._res["result"] = _result_calc(self._res)
                self.fulfill(self._res)
                return
            self._apply(event)

    def _apply(self, event: EventLogEvent) -> None:
        res, name, ctx = self._res, event.name, event.context
        if name == "submit":
            res["t_submit"] = event.timestamp
        elif name == "alloc":
            res["t_run"] = event.timestamp
        elif name == "finish":
            res["t_cleanup"] = event.timestamp
            res["waitstatus"] = ctx.get("status", 0)
        elif name == "exception":
            sev = ctx.get("severity", 0)
            prev = res.get("exception_severity", -1)
            # a later exception replaces an earlier one unless it is less severe
            if res["exception_occurred"] and 0 < prev < sev:
                return
            res.update(exception_occurred=True, exception_type=ctx.get("type", ""),
                       exception_note=ctx.get("note", ""), exception_severity=sev)

    def wait_for(self, timeout: float = -1.0) -> JobResultFuture:
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        self._consume()
        while not self._values:
            remaining = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            self._watch.wait_for(remaining)
            self._consume()
        return self

    def then(self, callback, *args, **kwargs) -> JobResultFuture:
        super().then(callback, *args, **kwargs)
        self._watch.then(lambda _f: self._consume())
        return self

    def get_dict(self) -> dict:
        """The raw result dict."""
        return self.get()

    def get_info(self):
        """The result as a :class:`flux.job.info.JobInfo`, of which only the fields the
        eventlog gives are meaningful: id, t_submit, t_run, t_cleanup, waitstatus,
        returncode, runtime, result, result_id, exception."""
        from flux.job.info import JobInfo

        return JobInfo(self.get())


def result_async(flux_handle: Flux, jobid: int, flags: int = 0) -> JobResultFuture:
    """Watch a job's eventlog until it is inactive; the future holds its result.

    Works for any job (not only waitable ones), as often as wanted, before or after
    the job ends."""
    return JobResultFuture(flux_handle, JobID(jobid))


def result(flux_handle: Flux, jobid: int, flags: int = 0):
    """Block until the job is inactive and return how it ended."""
    return result_async(flux_handle, jobid, flags).get_info()
