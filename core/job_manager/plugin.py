"""Job services, registered through the `flux.broker` hook like any plugin.

Every rank runs `resource` (to report its hardware). Rank 0 runs job-ingest,
job-manager, job-exec, and the scheduler named by `[sched] module` (config) or the
`sched.module` attribute (default `simple`), loaded from the `flux.scheduler` group.
"""

from __future__ import annotations

import asyncio

from flux.core.hookspecs import hookimpl


@hookimpl
def broker_services(broker):
    from flux.core.resource.service import ResourceService

    services = [ResourceService(broker)]
    if broker.rank != 0:
        return services
    from flux.core.exec.service import ExecService
    from flux.core.ingest.service import IngestService
    from flux.core.job.fluid import FluidGenerator
    from flux.core.job_manager.jobtap import Jobtap
    from flux.core.job_manager.manager import JobManager
    from flux.core.plugins import load_driver

    gen = FluidGenerator(0)
    jm = JobManager(broker, next_id=gen.next)
    jm.jobtap = Jobtap(broker, jm)
    broker.job_manager = jm
    from flux.core.exec.launcher import ShellLauncher as launcher

    services += [jm, IngestService(broker), ExecService(broker, launcher)]
    name = broker.conf.get("sched", {}).get("module") or broker.attrs.get("sched.module") or "simple"
    broker.attrs.setdefault("sched.module", name)
    try:
        sched_cls = load_driver("flux.scheduler", name)
        services.append(sched_cls(broker))
    except LookupError as exc:
        broker.log(2, f"scheduler: {exc}; jobs will stay pending")
    return services


@hookimpl
def broker_ready(broker):
    if broker.rank == 0:
        asyncio.ensure_future(_ready(broker))


async def _ready(broker):
    await broker.resource.build()
    exec_svc = broker.lookup("job-exec.start")
    if exec_svc is not None:
        await exec_svc.hello()
