"""``flux.job``: job ids, jobspec, and (added by other modules) submission and monitoring.

Cheap names are imported here; the jobspec classes load on first use (PEP 562), so
``import flux.job`` stays light for code that only needs :class:`JobID`.
"""

from flux.job.JobID import JobID, id_encode, id_parse

_LAZY = {
    "Jobspec": "flux.job.jobspec",
    "JobspecV1": "flux.job.jobspec",
    "JobspecError": "flux.job.jobspec",
    "validate_jobspec": "flux.job.jobspec",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:  # submodules: `flux.job.list`, `flux.job.executor`...
        from flux._lazy import submodule

        return submodule("flux.job", name)
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["JobID", "Jobspec", "JobspecError", "JobspecV1", "id_encode", "id_parse",
           "validate_jobspec"]

# Submission, waiting, events and signals.  Imported eagerly (they are light): `submit`,
# `wait` and `event` are also submodule names, and importing a submodule rebinds its
# name on the package, so the functions must be bound here after their modules load.
from flux.job.event import (  # noqa: E402
    MAIN_EVENTS,
    EventLogEvent,
    JobEventWatchFuture,
    JobException,
    event_wait,
    event_watch,
    event_watch_async,
)
from flux.job.kill import (  # noqa: E402
    cancel,
    cancel_async,
    job_raise,
    job_raise_async,
    kill,
    kill_async,
)
from flux.job.submit import (  # noqa: E402
    SubmitBatchFuture,
    SubmitFuture,
    submit,
    submit_async,
    submit_batch_async,
    submit_get_id,
)
from flux.job.wait import (  # noqa: E402
    JobResultFuture,
    JobWaitFuture,
    JobWaitResult,
    result,
    result_async,
    wait,
    wait_async,
    wait_get_status,
)

__all__ += [
    "MAIN_EVENTS", "EventLogEvent", "JobEventWatchFuture", "JobException", "event_wait",
    "event_watch", "event_watch_async", "cancel", "cancel_async", "job_raise", "job_raise_async",
    "kill", "kill_async", "SubmitBatchFuture", "SubmitFuture", "submit", "submit_async",
    "submit_batch_async", "submit_get_id", "JobResultFuture", "JobWaitFuture",
    "JobWaitResult", "result", "result_async", "wait", "wait_async", "wait_get_status",
]

# Job listing (flux.job.list, flux.job.info, flux.job.stats), loaded on first use.
_LAZY.update(dict.fromkeys(("JobList", "job_list", "job_list_inactive", "job_list_id",
                            "get_job"), "flux.job.list"))
_LAZY.update(dict.fromkeys(("JobInfo", "JobInfoFormat", "job_fields_to_attrs"),
                           "flux.job.info"))
_LAZY["JobStats"] = "flux.job.stats"
_LAZY.update(dict.fromkeys(("job_kvs", "job_kvs_guest"), "flux.job.kvs"))
__all__ += ["JobList", "job_list", "job_list_inactive", "job_list_id", "get_job", "JobInfo",
            "JobInfoFormat", "job_fields_to_attrs", "JobStats", "job_kvs", "job_kvs_guest"]

# Workflow-tool names (flux-core exports them here): loaded on first use, since the
# executor pulls in threading and concurrent.futures.
_LAZY.update({
    "FluxExecutor": "flux.job.executor",
    "FluxExecutorFuture": "flux.job.executor",
    "JournalConsumer": "flux.job.journal",
    "JournalEvent": "flux.job.journal",
})
__all__ += ["FluxExecutor", "FluxExecutorFuture", "JournalConsumer", "JournalEvent"]
