"""Job services, registered through the `flux.broker` hook like any plugin.

Every rank runs `resource` (to report its hardware). Rank 0 runs job-ingest,
job-manager, job-exec, and the scheduler named by `[sched] module` (config) or the
`sched.module` attribute (default `graph`), loaded from the `flux.scheduler` group.
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
    name = broker.conf.get("sched", {}).get("module") or broker.attrs.get("sched.module") or "graph"
    broker.attrs.setdefault("sched.module", name)
    try:
        sched_cls = load_driver("flux.scheduler", name)
        services.append(sched_cls(broker))
    except LookupError as exc:
        broker.log(2, f"scheduler: {exc}; jobs will stay pending")
    return services


SCHED_READY_TIMEOUT = 10.0  # seconds a loaded scheduler has to say it is ready


@hookimpl
def broker_ready(broker):
    if broker.rank == 0:
        return _ready(broker)
    return None


async def _ready(broker):
    """Start-up: the inventory, exec, and the scheduler ready for jobs (so a job
    submitted as soon as the instance is up is matched against its resources)."""
    await broker.resource.build()
    exec_svc = broker.lookup("job-exec.start")
    if exec_svc is not None:
        await exec_svc.hello()
    jm = getattr(broker, "job_manager", None)
    if jm is not None and broker.lookup("sched.alloc") is not None:
        try:
            await asyncio.wait_for(jm.sched_up.wait(), SCHED_READY_TIMEOUT)
        except TimeoutError:
            broker.log(3, f"the scheduler was not ready within {SCHED_READY_TIMEOUT:g}s")


@hookimpl
def broker_cleanup(broker):
    """Shutdown: start no more jobs, cancel the running ones and wait for them to end
    (as flux-core's cleanup runs `flux queue stop` and `flux cancel --states RUN`),
    so child instances among them shut down cleanly rather than being killed."""
    jm = getattr(broker, "job_manager", None)
    from flux.core.job_manager.job import CLEANUP, RUN

    if jm is None or not any(j.state in (RUN, CLEANUP) for j in jm.jobs.values()):
        return None
    return _cancel_running(broker)


async def _cancel_running(broker):
    from flux.core.errors import FluxError

    try:
        await broker.rpc("job-manager.queue-start", {"start": False, "all": True,
                                                     "reason": "instance is shutting down"})
    except FluxError as exc:
        broker.log(4, f"cleanup: could not stop the queues: {exc.strerror}")
    await broker.rpc("job-manager.raiseall", {
        "states": 16, "userid": 0xFFFFFFFF, "type": "cancel", "severity": 0,
        "note": "the instance is shutting down"})
    exec_svc = broker.lookup("job-exec.kill")
    grace = 2 * getattr(exec_svc, "kill_timeout", 5.0) + 5.0
    try:
        await asyncio.wait_for(broker.rpc("job-manager.idle", {}).get(), grace)
    except TimeoutError:
        broker.log(3, f"cleanup: running jobs did not end within {grace:g}s")
