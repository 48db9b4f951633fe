"""Every extension point of the project, in one place.

Hooks are pluggy hook specifications, grouped by the entry-point group that
distributions use to register implementations (see DESIGN.md, "Extension
points"). A plugin is any object (usually a module) with functions named like
these specs and marked with `@hookimpl`. Built-in behaviour registers through
exactly the same groups.

Driver groups (one implementation picked by name, loaded with stevedore) are
documented in `DRIVER_GROUPS`; their interface classes live with the service that
uses them.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "flux"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# entry-point group -> what its plugins are
HOOK_GROUPS = {
    "flux.broker": "broker services and lifecycle (BrokerSpec)",
    "flux.ingest": "job submission: frobnicate and validate jobspecs (IngestSpec)",
    "flux.jobtap": "job manager: priority, dependencies, limits, prolog/epilog (JobtapSpec)",
    "flux.shell": "job shell: task setup, affinity, PMI, output, signals (ShellSpec)",
}
DRIVER_GROUPS = {
    "flux.queue_policy": "scheduler queue policy (fcfs, easy, conservative, hybrid)",
    "flux.match_policy": "scheduler match policy (first, low, high, locality, variation)",
    "flux.resource_reader": "resource graph readers (local hwloc-like discovery, R, JGF, TOML)",
    "flux.cmd": "`flux` subcommands (a callable taking argv)",
    "flux.scheduler": "the `sched` service of an instance (simple, graph)",
}
ALL_GROUPS = {**HOOK_GROUPS, **DRIVER_GROUPS}


class BrokerSpec:
    """Group `flux.broker`: what a broker runs."""

    @hookspec
    def broker_services(self, broker: Any) -> list:
        """Return Service objects to add to this broker (called once at start)."""

    @hookspec
    def broker_ready(self, broker: Any) -> Any:
        """The broker's overlay subtree is up and it is about to serve. May return an
        awaitable: start-up work that must end before the instance is ready (rank 0
        runs its initial program and answers `state-machine.wait` after it)."""

    @hookspec
    def broker_shutdown(self, broker: Any) -> None:
        """The broker is shutting down (services still present)."""

    @hookspec
    def broker_cleanup(self, broker: Any) -> Any:
        """Rank 0, as shutdown begins (before any broker leaves): return an awaitable
        to finish work first (running jobs are canceled and waited for), or None."""


class IngestSpec:
    """Group `flux.ingest`: every submitted jobspec passes through these."""

    @hookspec
    def ingest_frobnicate(self, jobspec: dict, userid: int, urgency: int, flags: int,
                          config: dict, instance: Any) -> None:
        """Modify the jobspec in place (defaults, queue constraints)."""

    @hookspec
    def ingest_validate(self, jobspec: dict, userid: int, urgency: int, flags: int,
                        config: dict, instance: Any) -> None:
        """Raise ValueError (or FluxError) with a message to reject the job."""


class JobtapSpec:
    """Group `flux.jobtap`: callbacks from the job manager as jobs move through states.

    `manager` is the JobManager (core/job_manager/manager.py): plugins use it to
    add or remove dependencies, post events or change a job's priority.
    """

    @hookspec
    def jobtap_configure(self, manager: Any) -> bool | None:
        """Called once when the job manager loads its plugins. Return False when this
        instance's configuration leaves the plugin nothing to do: it is then unregistered
        and costs nothing per job (hooks run a dozen times per job)."""

    @hookspec
    def jobtap_validate(self, job: Any, manager: Any) -> None:
        """Raise ValueError to reject a job at submission (limits, dependency syntax)."""

    @hookspec(firstresult=True)
    def jobtap_priority(self, job: Any, manager: Any) -> int | None:
        """Return the job's priority (0..2^32-1); the first non-None answer wins."""

    @hookspec
    def jobtap_state(self, job: Any, state: str, prev: str, manager: Any) -> None:
        """The job entered `state`."""

    @hookspec
    def jobtap_dependencies(self, job: Any, dependencies: list, manager: Any) -> None:
        """The job entered DEPEND: add its dependencies (manager.dependency_add)."""

    @hookspec
    def jobtap_event(self, job: Any, name: str, context: dict, manager: Any) -> None:
        """An event was appended to the job's eventlog."""

    @hookspec(firstresult=True)
    def jobtap_delegate(self, job: Any, manager: Any) -> Any:
        """The job entered SCHED: return an object that runs it somewhere else (another
        instance) instead of this instance's scheduler and exec, or None.

        The job then gets no allocation here: the delegate posts its `alloc`, `start`,
        `finish`, `release`, `free` and `clean` events (manager.post) as the job
        progresses where it runs. The manager calls `delegate.cleanup(job)` each time
        the job enters or is in CLEANUP (a fatal exception here, or the delegate's own
        `finish`): the delegate stops the job where it runs, if needed, and posts
        `clean` once it is over there. `delegate.kill(job, signum)` relays
        `flux job kill`."""


class ShellSpec:
    """Group `flux.shell`: callbacks in the job shell (flux-shell-plugins(7) topics)."""

    @hookspec
    def shell_init(self, shell: Any) -> None:
        """`shell.init`: tasks created, not yet started."""

    @hookspec
    def shell_post_init(self, shell: Any) -> None:
        """`shell.post-init`: after the init barrier."""

    @hookspec
    def task_init(self, shell: Any, task: Any) -> None:
        """`task.init`: before the task is forked; may edit task.env."""

    @hookspec
    def task_exec(self, shell: Any, task: Any) -> None:
        """`task.exec`: in the child, just before exec (affinity, binding)."""

    @hookspec
    def task_fork(self, shell: Any, task: Any) -> None:
        """`task.fork`: the task has been started."""

    @hookspec
    def task_exit(self, shell: Any, task: Any) -> None:
        """`task.exit`: a task exited."""

    @hookspec
    def shell_start(self, shell: Any) -> None:
        """`shell.start`: all local tasks started."""

    @hookspec
    def shell_finish(self, shell: Any) -> None:
        """`shell.finish`: all local tasks finished."""

    @hookspec
    def shell_exit(self, shell: Any) -> None:
        """`shell.exit`: the shell is about to exit."""


SPECS = {"flux.broker": BrokerSpec, "flux.ingest": IngestSpec, "flux.jobtap": JobtapSpec,
         "flux.shell": ShellSpec}
