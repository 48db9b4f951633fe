"""The `prolog-epilog` jobtap plugin (group `flux.jobtap`): job-manager prolog and epilog.

Configured by `[job-manager.prolog]` / `[job-manager.epilog]` (see config.py); does
nothing when neither table exists.

Prolog: when a job enters RUN (it holds resources, no shell started yet) the plugin
posts `prolog-start`, which makes the job manager hold back the start request, and runs
the command on rank 0 (or on every rank of the job with `per-rank`). When it ends,
`prolog-finish {description, status}` releases the hold. A non-zero status, or the
timeout, raises a fatal job exception of type `prolog`, so the job goes to CLEANUP
without running. A fatal exception raised while the prolog runs (e.g. `flux cancel`)
terminates it (`cancel-on-exception`).

Epilog: started at the job's `finish` event (all shells gone), or once the job is in
CLEANUP after a prolog that failed or was canceled; `epilog-start` holds back the `free`
of the job's resources until `epilog-finish`. A failure raises a fatal `epilog` exception
(the job's result becomes failed); the resources are freed all the same.

Timeouts terminate the script's whole process group (SIGTERM, SIGKILL after
`kill-timeout`). Nothing is drained: a failure is reported on the job (exception note
naming the ranks) and in the broker log (`flux dmesg`), never silently.

Scripts get `FLUX_JOB_ID` (f58), `FLUX_JOB_USERID`, `FLUX_JOB_RANKS`, `FLUX_OWNER_USERID`
and `FLUX_URI` (their rank's broker). With `exec.imp` set and no `command`, the command is
`flux-imp run prolog|epilog`, and the IMP runs its configured script as root.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any

from flux.core.hookspecs import hookimpl
from flux.core.job.fluid import encode_f58
from flux.core.util.fsd import format_fsd
from flux.core.util.idset import decode as idset_decode
from flux.core.util.idset import encode as idset_encode

from flux_jobtap_perilog.config import ActionConfig, ConfigError, PerilogConfig, parse_config
from flux_jobtap_perilog.runner import Result, Run

RUN, CLEANUP = "RUN", "CLEANUP"
AUX_PROLOG = "perilog.prolog"  # job.aux: the running prolog Run
AUX_EPILOG = "perilog.epilog"  # job.aux: True once the epilog was started


class _State:
    def __init__(self, manager: Any):
        self.manager = manager
        try:
            self.conf: PerilogConfig | ConfigError = parse_config(manager.broker.conf)
        except ConfigError as exc:
            self.conf = exc
            manager.broker.log(3, f"prolog-epilog: {exc}; every job is rejected")


_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state(manager: Any) -> _State:
    st = _states.get(manager)
    if st is None:
        st = _states[manager] = _State(manager)
    return st


def _conf(manager: Any) -> PerilogConfig | None:
    conf = _state(manager).conf
    return None if isinstance(conf, ConfigError) else conf


def _ranks(job: Any) -> list[int]:
    out: list[int] = []
    try:
        for entry in job.R["execution"]["R_lite"]:
            out += idset_decode(str(entry["rank"]))
    except (KeyError, TypeError, ValueError):
        return [0]
    return sorted(set(out)) or [0]


def _env(manager: Any, job: Any, ranks: list[int]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"FLUX_JOB_ID": encode_f58(job.id), "FLUX_JOB_USERID": str(job.userid),
                "FLUX_JOB_RANKS": idset_encode(ranks),
                "FLUX_OWNER_USERID": str(manager.broker.owner)})
    return env


def _describe_failure(kind: str, ac: ActionConfig, res: Result) -> str:
    if res.timed_out:
        return f"{kind} timed out after {format_fsd(ac.timeout)} (job-manager.{kind}.timeout)"
    st = res.status
    what = (f"failed with exit code={st >> 8}" if st & 0x7F == 0
            else f"was killed by signal {st & 0x7F}")
    note = f"{kind} {what}"
    if ac.per_rank:
            note += f" on rank(s) {idset_encode(res.failed_ranks())}"
    errors = sorted({r.error for r in res.ranks if r.error})
    if errors:
        note += f" ({'; '.join(errors)})"
    return note


def _start(manager: Any, job: Any, ac: ActionConfig) -> Run:
    ranks = _ranks(job)
    run_on = ranks if ac.per_rank else [0]
    imp = (manager.broker.conf.get("exec") or {}).get("imp")
    privileged = imp if imp and ac.command[0] == imp else None
    return Run(manager.broker, f"{ac.description}: {encode_f58(job.id)}", list(ac.command),
               _env(manager, job, ranks), run_on, ac.timeout, ac.kill_timeout, imp=privileged)


# ---------------------------------------------------------------- prolog


def _prolog(manager: Any, job: Any, ac: ActionConfig) -> None:
    run = _start(manager, job, ac)
    job.aux[AUX_PROLOG] = run
    manager.prolog_start(job, ac.description)
    asyncio.ensure_future(_prolog_wait(manager, job, ac, run))


async def _prolog_wait(manager: Any, job: Any, ac: ActionConfig, run: Run) -> None:
    try:
        res = await run.wait()
    except Exception as exc:  # noqa: BLE001 - the job must not stay held
        manager.broker.log_exception(f"{ac.description}: job {job.id}", exc)
        res = None
    job.aux.pop(AUX_PROLOG, None)
    status = res.status if res is not None else 1 << 8
    manager.prolog_finish(job, ac.description, status)
    if status != 0 and job.state == RUN:
        note = _describe_failure("prolog", ac, res) if res is not None else "prolog failed"
        manager.broker.log(3, f"{ac.description}: job {encode_f58(job.id)}: {note}")
        manager.post(job, "exception", {"type": "prolog", "severity": 0, "note": note})
    if job.state == CLEANUP:
        _maybe_epilog(manager, job)


# ---------------------------------------------------------------- epilog


def _maybe_epilog(manager: Any, job: Any) -> None:
    """Start the epilog once: the job held resources, no prolog is running, and the
    shells are gone (a `finish` event) or never started (the prolog failed or was
    canceled, or the job was canceled before its shells)."""
    conf = _conf(manager)
    if conf is None or conf.epilog is None or job.aux.get(AUX_EPILOG):
        return
    if "t_run" not in job.times or AUX_PROLOG in job.aux:
        return
    if job.status is None and job.started:
        return  # shells still running: wait for `finish`
    job.aux[AUX_EPILOG] = True
    ac = conf.epilog
    run = _start(manager, job, ac)
    manager.epilog_start(job, ac.description)
    asyncio.ensure_future(_epilog_wait(manager, job, ac, run))


async def _epilog_wait(manager: Any, job: Any, ac: ActionConfig, run: Run) -> None:
    try:
        res = await run.wait()
    except Exception as exc:  # noqa: BLE001 - the job must not stay held
        manager.broker.log_exception(f"{ac.description}: job {job.id}", exc)
        res = None
    status = res.status if res is not None else 1 << 8
    manager.epilog_finish(job, ac.description, status)
    if status != 0:
        note = _describe_failure("epilog", ac, res) if res is not None else "epilog failed"
        manager.broker.log(3, f"{ac.description}: job {encode_f58(job.id)}: {note}")
        manager.post(job, "exception", {"type": "epilog", "severity": 0, "note": note})


# ----------------------------------------------------------------- hooks


@hookimpl
def jobtap_configure(manager: Any) -> bool:
    """Neither a prolog nor an epilog configured: nothing to do on any job (a bad
    configuration keeps the plugin, so every job is refused with the reason)."""
    conf = _state(manager).conf
    return isinstance(conf, ConfigError) or conf.prolog is not None or conf.epilog is not None


@hookimpl
def jobtap_validate(job: Any, manager: Any) -> None:
    conf = _state(manager).conf
    if isinstance(conf, ConfigError):
        raise conf


@hookimpl
def jobtap_state(job: Any, state: str, prev: str, manager: Any) -> None:
    conf = _conf(manager)
    if conf is None:
        return
    if state == RUN and conf.prolog is not None:
        _prolog(manager, job, conf.prolog)
    elif state == CLEANUP:
        run = job.aux.get(AUX_PROLOG)
        if run is not None and conf.prolog is not None and conf.prolog.cancel_on_exception:
            manager.broker.log(6, f"{conf.prolog.description}: job {encode_f58(job.id)}:"
                                  " canceling the prolog (fatal job exception)")
            run.cancel()
        _maybe_epilog(manager, job)


@hookimpl
def jobtap_event(job: Any, name: str, context: dict, manager: Any) -> None:
    # `finish` after an exception (the job is already in CLEANUP): the shells are gone now
    if name == "finish" and job.state == CLEANUP:
        _maybe_epilog(manager, job)
