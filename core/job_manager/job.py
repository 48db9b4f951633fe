"""A job as the job manager holds it, and the state transitions of SPEC 4.3."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from flux.core.job import states
from flux.core.job_manager import eventlog

NEW, DEPEND, PRIORITY, SCHED, RUN, CLEANUP, INACTIVE = (
    "NEW", "DEPEND", "PRIORITY", "SCHED", "RUN", "CLEANUP", "INACTIVE")
STATE_NUM = states.STATES  # "RUN" -> 16 ...
ACTIVE_STATES = (NEW, DEPEND, PRIORITY, SCHED, RUN, CLEANUP)


def next_state(state: str, name: str, context: dict | None) -> str:
    """The job manager keeps state names; the transition table is flux.core.job.states'."""
    return states.STATE_NAMES[states.next_state(states.STATES[state], name, context)]


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
    R: dict | None = None  # without its `scheduling` key (JGF): the KVS has the whole R
    # the eventlog, one encoded line (bytes) per entry: a third of the size of entry dicts;
    # None once the job is inactive and its eventlog is only in the KVS (read back
    # through `store`)
    _eventlog: list | None = attrs.Factory(list)
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
    delegate: Any = None  # runs the job in another instance (JobtapSpec.jobtap_delegate)
    waiters: list = attrs.Factory(list)
    aux: dict = attrs.Factory(dict)  # plugin data
    store: Any = None  # what reads a released eventlog back (the JobManager)

    @property
    def eventlog(self) -> list[dict]:
        """The primary eventlog's entries (decoded on each call; of an inactive job: read
        from the KVS)."""
        lines = self._eventlog
        if lines is None:
            return self.store.stored_eventlog(self.id)
        return [orjson.loads(line) for line in lines]

    @eventlog.setter
    def eventlog(self, events: list[dict]) -> None:
        self._eventlog = [eventlog.encode(e) for e in events]

    def eventlog_raw(self) -> bytes | None:
        """The eventlog as stored (RFC 18 lines) while in memory, else None."""
        lines = self._eventlog
        return b"".join(lines) if lines is not None else None

    @property
    def eventlog_held(self) -> bool:
        """True while the entries are in memory (and possibly ahead of the KVS)."""
        return self._eventlog is not None

    def add_event(self, line: bytes) -> None:
        """Record an encoded entry (eventlog.encode) while the eventlog is in memory."""
        if self._eventlog is not None:
            self._eventlog.append(line)

    def release_eventlog(self, store: Any) -> None:
        """Drop the in-memory entries: the KVS has them all (the job is inactive)."""
        self.store = store
        self._eventlog = None

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
        return states.result_of(self.status, self.exceptions)
