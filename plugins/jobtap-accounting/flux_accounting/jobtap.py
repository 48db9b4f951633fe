"""The `accounting` jobtap plugin (group `flux.jobtap`): association checks, limits and the
multi-factor priority, active only when the instance has an `[accounting]` table.

- Submit: the job's user must have an association in the job's bank (the
  `attributes.system.bank` it names, else the user's default bank) and may use the job's
  queue; over `max_active_jobs` the job is refused (a hard limit).
- DEPEND: over `max_running_jobs` (counting the association's jobs already past this
  point and not yet inactive) the job gets the dependency `max-running-jobs-user-limit`
  and waits in DEPEND; each job of the association that becomes inactive releases the
  oldest held one (a soft limit, as flux-accounting).
- PRIORITY: fair share, queue, bank, urgency and age factors (policy.py); this answer
  wins over `priority-default`, which is asked last.
- INACTIVE: the job's core-seconds (cores of R x run time) are added to the association's
  decayed usage and stored with a job record; fair shares and the priorities of pending
  jobs are then recomputed.

A limit of 0 means no limit.
"""

from __future__ import annotations

from typing import Any

from flux.core.hookspecs import hookimpl

from flux_accounting import state
from flux_accounting.state import AUX

DEPEND, PRIORITY, INACTIVE = "DEPEND", "PRIORITY", "INACTIVE"


def _acct(manager: Any) -> state.Accounting | None:
    acct = state.get(manager.broker)  # raises on a configuration error
    if acct is not None and acct.manager is None:
        acct.manager = manager
    return acct


@hookimpl
def jobtap_configure(manager: Any) -> bool:
    """Without an [accounting] table there is nothing to do on any job."""
    try:
        return _acct(manager) is not None
    except Exception:  # noqa: BLE001 - a bad table: stay, so every job gets the error
        return True


@hookimpl
def jobtap_validate(job: Any, manager: Any) -> None:
    acct = _acct(manager)
    if acct is None:
        return
    a = acct.lookup(job)
    if a.max_active and a.n_active >= a.max_active:
        raise ValueError(f"user has max active jobs: {a.username} already has {a.n_active}"
                         f" active job(s) in bank {a.bank} (max_active_jobs={a.max_active})")


@hookimpl
def jobtap_event(job: Any, name: str, context: dict, manager: Any) -> None:
    if name != "submit":
        return
    try:
        acct = _acct(manager)
        if acct is None:
            return
        a = acct.lookup(job)
    except ValueError:
        return  # validate refused it (or the job was submitted with accounting unset)
    job.aux[AUX] = a
    a.n_active += 1
    acct.start_timer()


@hookimpl
def jobtap_state(job: Any, state: str, prev: str, manager: Any) -> None:
    a = job.aux.get(AUX)
    if a is None:
        return
    acct = _acct(manager)
    if acct is None:
        return
    if state == DEPEND:
        acct.take_slot_or_hold(job, a)
    elif state == INACTIVE:
        acct.job_inactive(job, a)


@hookimpl
def jobtap_priority(job: Any, manager: Any) -> int | None:
    a = job.aux.get(AUX)
    if a is None:
        return None
    acct = _acct(manager)
    if acct is None:
        return None
    return acct.priority_of(job, a)
