"""A job as the job manager holds it, and the state transitions of SPEC 4.3."""

from __future__ import annotations

from typing import Any

import attrs

NEW, DEPEND, PRIORITY, SCHED, RUN, CLEANUP, INACTIVE = (
    "NEW", "DEPEND", "PRIORITY", "SCHED", "RUN", "CLEANUP", "INACTIVE")
STATE_NUM = {NEW: 1, DEPEND: 2, PRIORITY: 4, SCHED: 8, RUN: 16, CLEANUP: 32, INACTIVE: 64}
ACTIVE_STATES = (NEW, DEPEND, PRIORITY, SCHED, RUN, CLEANUP)

# event name -> {from state: to state}; events not listed change no state
TRANSITIONS: dict[str, dict[str, str]] = {
    "validate": {NEW: DEPEND},
    "depend": {DEPEND: PRIORITY},
    "priority": {PRIORITY: SCHED},
    "urgency": {SCHED: PRIORITY},
    "jobspec-update": {SCHED: PRIORITY},
    "flux-restart": {SCHED: PRIORITY},
    "alloc": {SCHED: RUN},
    "finish": {RUN: CLEANUP},
    "clean": {CLEANUP: INACTIVE},
}

RESULT_COMPLETED, RESULT_FAILED, RESULT_CANCELED, RESULT_TIMEOUT = 1, 2, 4, 8
RESULT_NAMES = {1: "COMPLETED", 2: "FAILED", 4: "CANCELED", 8: "TIMEOUT"}


def next_state(state: str, name: str, context: dict | None) -> str:
    if name == "exception":
        if (context or {}).get("severity", 0) == 0 and state in (NEW, DEPEND, PRIORITY, SCHED, RUN):
            return CLEANUP
        return state
    return TRANSITIONS.get(name, {}).get(state, state)


@attrs.define(slots=True, eq=False)
class Job:
    id: int
    userid: int
    urgency: int
    flags: int
    t_submit: float
    jobspec: dict
    state: str = NEW
    priority: int = -1
    R: dict | None = None
    eventlog: list = attrs.Factory(list)
    annotations: dict = attrs.Factory(dict)
    dependencies: set = attrs.Factory(set)  # outstanding dependency descriptions
    exception: dict | None = None  # the first severity-0 exception
    exceptions: list = attrs.Factory(list)
    status: int | None = None  # `finish` wait status
    times: dict = attrs.Factory(dict)  # t_depend, t_priority, t_sched, t_run, t_cleanup, t_inactive
    alloc_pending: bool = False
    has_resources: bool = False
    exec_running: bool = False
    started: bool = False
    freeing: bool = False
    held_actions: int = 0  # prolog/epilog style holds: >0 delays start/free
    waiters: list = attrs.Factory(list)
    aux: dict = attrs.Factory(dict)  # plugin data

    @property
    def active(self) -> bool:
        return self.state != INACTIVE

    @property
    def name(self) -> str:
        try:
            return self.jobspec["attributes"]["system"]["job"]["name"]
        except (KeyError, TypeError):
            pass
        try:
            cmd = self.jobspec["tasks"][0]["command"]
            return cmd[0].rsplit("/", 1)[-1] if cmd else ""
        except (KeyError, IndexError, TypeError):
            return ""

    def system(self, key: str, default: Any = None) -> Any:
        try:
            return self.jobspec["attributes"]["system"].get(key, default)
        except (KeyError, TypeError, AttributeError):
            return default

    @property
    def success(self) -> bool:
        return self.status == 0 and self.exception is None

    @property
    def result(self) -> int:
        if self.success:
            return RESULT_COMPLETED
        if self.exception is not None:
            t = self.exception.get("type")
            if t == "cancel":
                return RESULT_CANCELED
            if t == "timeout":
                return RESULT_TIMEOUT
        return RESULT_FAILED
