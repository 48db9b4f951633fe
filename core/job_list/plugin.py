"""`flux.broker` plugin: the job-list and job-info services on rank 0.

Both attach to the job manager (`broker.job_manager`) when they start, which is after
every plugin has created its services, so plugin order does not matter.
"""

from __future__ import annotations

from flux.core.hookspecs import hookimpl


@hookimpl
def broker_services(broker):
    if broker.rank != 0:
        return []
    from flux.core.job_info.service import JobInfoService
    from flux.core.job_list.service import JobListService

    return [JobListService(broker), JobInfoService(broker)]
