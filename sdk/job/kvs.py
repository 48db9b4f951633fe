"""``flux.job.kvs``: a job's KVS directory (``job.<dothex>``, RFC 16) and the copy of
its guest namespace kept there (``job.<dothex>.guest``) as :class:`flux.kvs.KVSDir`."""

from __future__ import annotations

from typing import Any

import flux.kvs
from flux.job.JobID import JobID

__all__ = ["job_kvs", "job_kvs_guest"]


def job_kvs(flux_handle: Any, jobid: Any) -> flux.kvs.KVSDir:
    """The job's directory in the primary namespace (eventlog, jobspec, R, ...)."""
    return flux.kvs.get_dir(flux_handle, JobID(jobid).kvs)


def job_kvs_guest(flux_handle: Any, jobid: Any) -> flux.kvs.KVSDir:
    """The job's guest directory (exec eventlog, output), as the job left it."""
    return flux.kvs.get_dir(flux_handle, JobID(jobid).kvs + ".guest")
