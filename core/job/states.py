"""Job states and results (RFC 21; SPEC 4.2-4.4): names, numbers, abbreviations, the
eventlog-replay state machine and the result computation.

States are flux-core's bitmask numbers so that masks of several states work (``PENDING``
is ``DEPEND|PRIORITY|SCHED``).  Formats follow flux-core's ``flux_job_statetostr()``:
``"L"`` long upper (``RUN``), ``"l"`` long lower, ``"S"`` short upper (``R``), ``"s"`` short
lower; an unknown number formats as ``(unknown)`` / ``?``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# ------------------------------------------------------------------ states

NEW = 1
DEPEND = 2
PRIORITY = 4
SCHED = 8
RUN = 16
CLEANUP = 32
INACTIVE = 64
# virtual states (masks)
PENDING = DEPEND | PRIORITY | SCHED  # 14
RUNNING = RUN | CLEANUP  # 48
ACTIVE = PENDING | RUNNING  # 62 (N.B. NEW is not included, as in flux-core)

#: the seven real states in order
STATE_NAMES: dict[int, str] = {
    NEW: "NEW",
    DEPEND: "DEPEND",
    PRIORITY: "PRIORITY",
    SCHED: "SCHED",
    RUN: "RUN",
    CLEANUP: "CLEANUP",
    INACTIVE: "INACTIVE",
}
STATE_ABBREV: dict[int, str] = {
    NEW: "N", DEPEND: "D", PRIORITY: "P", SCHED: "S", RUN: "R", CLEANUP: "C", INACTIVE: "I",
}
VIRTUAL_STATE_NAMES: dict[int, str] = {PENDING: "PENDING", RUNNING: "RUNNING", ACTIVE: "ACTIVE"}
VIRTUAL_STATE_ABBREV: dict[int, str] = {PENDING: "PD", RUNNING: "RU", ACTIVE: "A"}
STATES: dict[str, int] = {name: num for num, name in STATE_NAMES.items()}

# ----------------------------------------------------------------- results

COMPLETED = 1
FAILED = 2
CANCELED = 4
TIMEOUT = 8

RESULT_NAMES: dict[int, str] = {
    COMPLETED: "COMPLETED", FAILED: "FAILED", CANCELED: "CANCELED", TIMEOUT: "TIMEOUT",
}
RESULT_ABBREV: dict[int, str] = {COMPLETED: "CD", FAILED: "F", CANCELED: "CA", TIMEOUT: "TO"}
RESULTS: dict[str, int] = {name: num for num, name in RESULT_NAMES.items()}

_STATE_LOOKUP: dict[str, int] = {}
for _num, _name in STATE_NAMES.items():
    _STATE_LOOKUP[_name.lower()] = _num
    _STATE_LOOKUP[STATE_ABBREV[_num].lower()] = _num
_VIRTUAL_LOOKUP: dict[str, int] = {}
for _num, _name in VIRTUAL_STATE_NAMES.items():
    _VIRTUAL_LOOKUP[_name.lower()] = _num
    _VIRTUAL_LOOKUP[VIRTUAL_STATE_ABBREV[_num].lower()] = _num
_RESULT_LOOKUP: dict[str, int] = {}
for _num, _name in RESULT_NAMES.items():
    _RESULT_LOOKUP[_name.lower()] = _num
    _RESULT_LOOKUP[RESULT_ABBREV[_num].lower()] = _num
# flux-core accepts the American spelling only; take the British one too
_RESULT_LOOKUP.setdefault("cancelled", CANCELED)
del _num, _name


def _fmt(num: int, fmt: str | None, longs: Mapping[int, str], shorts: Mapping[int, str]) -> str:
    f = fmt[:1] if fmt else "L"
    if num in longs:
        long, short = longs[num], shorts[num]
    else:
        long, short = "(unknown)", "?"
    if f == "S":
        return short
    if f == "s":
        return short.lower()
    if f == "l":
        return long.lower()
    return long


def statetostr(state: int | str, fmt: str = "L") -> str:
    """State number (or name) to string; virtual masks PENDING/RUNNING/ACTIVE are named too."""
    if isinstance(state, str):
        state = strtostate(state)
    if state in VIRTUAL_STATE_NAMES:
        return _fmt(state, fmt, VIRTUAL_STATE_NAMES, VIRTUAL_STATE_ABBREV)
    return _fmt(state, fmt, STATE_NAMES, STATE_ABBREV)


def strtostate(text: str, virtual: bool = False) -> int:
    """State name or abbreviation (any case) to its number; ``virtual=True`` also takes
    ``pending``/``running``/``active`` (``PD``/``RU``/``A``).  ValueError if unknown."""
    key = text.strip().lower()
    num = _STATE_LOOKUP.get(key)
    if num is None and virtual:
        num = _VIRTUAL_LOOKUP.get(key)
    if num is None:
        names = list(STATE_NAMES.values()) + (list(VIRTUAL_STATE_NAMES.values()) if virtual else [])
        raise ValueError(f"invalid job state '{text}' (expected one of {', '.join(names)})")
    return num


def resulttostr(result: int | str, fmt: str = "L") -> str:
    """Result number (or name) to string: COMPLETED/CD, FAILED/F, CANCELED/CA, TIMEOUT/TO."""
    if isinstance(result, str):
        result = strtoresult(result)
    return _fmt(result, fmt, RESULT_NAMES, RESULT_ABBREV)


def strtoresult(text: str) -> int:
    """Result name or abbreviation (any case) to its number.  ValueError if unknown."""
    num = _RESULT_LOOKUP.get(text.strip().lower())
    if num is None:
        raise ValueError(f"invalid job result '{text}'"
                         f" (expected one of {', '.join(RESULT_NAMES.values())})")
    return num


def states_in(mask: int) -> list[str]:
    """Names of the real states in a mask, in state order."""
    return [name for num, name in STATE_NAMES.items() if mask & num]


def parse_filter(text: str | Iterable[str]) -> tuple[int, int]:
    """``flux jobs --filter`` words (states, ``pending``/``running``/``active``, results;
    comma separated, any case) to ``(states_mask, results_mask)``.  ValueError on an
    unknown word, naming it."""
    words = text.split(",") if isinstance(text, str) else list(text)
    states = results = 0
    for word in words:
        key = word.strip().lower()
        if not key:
            continue
        if key in _STATE_LOOKUP:
            states |= _STATE_LOOKUP[key]
        elif key in _VIRTUAL_LOOKUP:
            states |= _VIRTUAL_LOOKUP[key]
        elif key in _RESULT_LOOKUP:
            results |= _RESULT_LOOKUP[key]
        else:
            raise ValueError(f"invalid state or result '{word.strip()}'")
    return states, results


def status_abbrev(state: int, result: int | None = None) -> str:
    """What ``flux jobs`` shows in its ST column: the state abbreviation while the job is
    active, the result abbreviation (CD, F, CA, TO) once it is inactive."""
    if state == INACTIVE and result:
        return RESULT_ABBREV.get(result, "?")
    return STATE_ABBREV.get(state, "?")


# ----------------------------------------------------- eventlog replay (4.3)

#: event name -> {from state: to state}.  Events not listed change no state.
TRANSITIONS: dict[str, dict[int, int]] = {
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

_FATAL_FROM = NEW | DEPEND | PRIORITY | SCHED | RUN


def next_state(state: int, name: str, context: Mapping | None = None) -> int:
    """The state after event ``name`` (SPEC 4.3).  A severity-0 ``exception`` sends any
    state before CLEANUP to CLEANUP; other exceptions change nothing."""
    if name == "exception":
        if state & _FATAL_FROM and (context or {}).get("severity", 0) == 0:
            return CLEANUP
        return state
    moves = TRANSITIONS.get(name)
    if moves is None:
        return state
    return moves.get(state, state)


def replay(events: Iterable[Mapping]) -> int:
    """The state reached by replaying eventlog entries (dicts with ``name``/``context``).

    The first event must be ``submit`` (ValueError otherwise)."""
    state = None
    for entry in events:
        name = entry["name"]
        if state is None:
            if name != "submit":
                raise ValueError(f"eventlog must start with 'submit', not '{name}'")
            state = NEW
            continue
        state = next_state(state, name, entry.get("context"))
    if state is None:
        raise ValueError("empty eventlog")
    return state


# ------------------------------------------------------------ result (4.4)


def result_of(finish_status: int | None, exceptions: Iterable[Mapping] = ()) -> int:
    """The job result from its ``finish`` wait status (None if it never finished) and its
    ``exception`` event contexts (in order).

    COMPLETED needs status 0 and no severity-0 exception.  Otherwise the most severe
    exception (lowest severity number; the first of equals) decides: ``cancel`` gives
    CANCELED, ``timeout`` gives TIMEOUT, anything else FAILED.
    """
    worst = None
    fatal = False
    for exc in exceptions:
        sev = exc.get("severity", 0)
        if sev == 0:
            fatal = True
        if worst is None or sev < worst.get("severity", 0):
            worst = exc
    if finish_status == 0 and not fatal:
        return COMPLETED
    if worst is not None:
        etype = worst.get("type")
        if etype == "cancel":
            return CANCELED
        if etype == "timeout":
            return TIMEOUT
    return FAILED
