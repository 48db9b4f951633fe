"""RFC 31 constraint objects with the job-list operators of RFC 43 (SPEC 7.7).

`compile_constraint(obj)` checks the whole object up front (a bad constraint is an
error naming the operator, never a silent non-match) and returns a matcher plus the
mask of states a matching job can be in, so the service skips whole state lists
(e.g. the inactive list when only pending jobs are wanted).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from flux.core.errors import FluxError
from flux.core.job import states as S
from flux.core.job_list.jobdata import ALL_STATES, JobData
from flux.core.util import hostlist, idset

Matcher = Callable[[JobData], bool]
USERID_ANY = 0xFFFFFFFF
TIME_OPS = ("t_submit", "t_depend", "t_priority", "t_sched", "t_run", "t_cleanup", "t_inactive")
OPERATORS = ("userid", "name", "queue", "states", "results", "hostlist", "ranks", *TIME_OPS,
             "and", "or", "not")


def _bad(text: str) -> FluxError:
    return FluxError(errno.EINVAL, f"constraint: {text}")


def _true(_jd: JobData) -> bool:
    return True


def _false(_jd: JobData) -> bool:
    return False


def _values(op: str, v: Any) -> list:
    if not isinstance(v, list):
        raise _bad(f"operator '{op}' needs an array of values, not {type(v).__name__}")
    return v


def _mask(op: str, values: list, parse: Callable[[str], int]) -> int:
    mask = 0
    for x in values:
        if isinstance(x, int) and not isinstance(x, bool):
            if x < 0:
                raise _bad(f"{op}: invalid value {x}")
            mask |= x
        elif isinstance(x, str):
            try:
                mask |= parse(x)
            except ValueError as exc:
                raise _bad(f"{op}: {exc}") from None
        else:
            raise _bad(f"{op}: values must be names or integer masks, not {x!r}")
    return mask


def _time_op(op: str, values: list) -> Matcher:
    if len(values) != 1 or not isinstance(values[0], str):
        raise _bad(f"{op} needs exactly one string like '>=1700000000.0'")
    text = values[0].strip()
    for cmp in (">=", "<=", ">", "<"):
        if text.startswith(cmp):
            break
    else:
        raise _bad(f"{op}: '{text}' must start with one of >, <, >=, <=")
    try:
        t = float(text[len(cmp):])
    except ValueError:
        raise _bad(f"{op}: '{text}' has no valid timestamp after '{cmp}'") from None
    # a timestamp that is not set yet (0) matches nothing
    if cmp == ">=":
        return lambda jd: (v := getattr(jd, op)) > 0 and v >= t
    if cmp == "<=":
        return lambda jd: (v := getattr(jd, op)) > 0 and v <= t
    if cmp == ">":
        return lambda jd: (v := getattr(jd, op)) > 0 and v > t
    return lambda jd: (v := getattr(jd, op)) > 0 and v < t


def compile_constraint(obj: Any) -> tuple[Matcher, int]:
    """(matcher, states mask) for a constraint object; None or {} matches every job."""
    if obj is None:
        return _true, ALL_STATES
    if not isinstance(obj, dict):
        raise _bad(f"a constraint must be a JSON object, not {type(obj).__name__}")
    if not obj:
        return _true, ALL_STATES
    if len(obj) != 1:
        raise _bad(f"a constraint object has exactly one operator, not {sorted(obj)}")
    op, arg = next(iter(obj.items()))
    values = _values(op, arg)
    if op in ("and", "or", "not"):
        subs = []
        for i, sub in enumerate(values):
            if not isinstance(sub, dict):
                raise _bad(f"'{op}' entry {i} must be a constraint object")
            subs.append(compile_constraint(sub))
        fns = [f for f, _ in subs]
        if op == "or":
            mask = 0
            for _, m in subs:
                mask |= m
            if not fns:
                return _true, ALL_STATES
            return (lambda jd: any(f(jd) for f in fns)), mask
        mask = ALL_STATES
        for _, m in subs:
            mask &= m
        conj = (lambda jd: all(f(jd) for f in fns)) if len(fns) != 1 else fns[0]
        if op == "and":
            return (conj if fns else _true), mask
        return (lambda jd: not conj(jd)) if fns else _false, ALL_STATES
    if op == "userid":
        uids = set()
        for u in values:
            if not isinstance(u, int) or isinstance(u, bool):
                raise _bad(f"userid: values must be integers, not {u!r}")
            uids.add(u)
        if USERID_ANY in uids:
            return _true, ALL_STATES
        if len(uids) == 1:
            (uid,) = uids
            return (lambda jd: jd.userid == uid), ALL_STATES
        return (lambda jd: jd.userid in uids), ALL_STATES
    if op in ("name", "queue"):
        names = set()
        for n in values:
            if not isinstance(n, str):
                raise _bad(f"{op}: values must be strings, not {n!r}")
            names.add(n)
        if op == "name":
            return (lambda jd: jd.name in names), ALL_STATES
        return (lambda jd: jd.queue in names), ALL_STATES
    if op == "states":
        mask = _mask(op, values, lambda x: S.strtostate(x, virtual=True))
        return (lambda jd: bool(jd.state & mask)), mask
    if op == "results":
        mask = _mask(op, values, S.strtoresult)
        return (lambda jd: jd.state == S.INACTIVE and bool((jd.result or 0) & mask)), S.INACTIVE
    if op == "hostlist":
        hosts: set[str] = set()
        for h in values:
            if not isinstance(h, str):
                raise _bad(f"hostlist: values must be hostlist strings, not {h!r}")
            try:
                hosts.update(hostlist.decode(h))
            except ValueError as exc:
                raise _bad(f"hostlist: {exc}") from None
        return (lambda jd: not hosts.isdisjoint(jd.hostset)), ALL_STATES & ~(S.NEW | S.PENDING)
    if op == "ranks":
        ranks: set[int] = set()
        for r in values:
            if not isinstance(r, str):
                raise _bad(f"ranks: values must be idset strings, not {r!r}")
            try:
                ranks.update(idset.decode(r))
            except ValueError as exc:
                raise _bad(f"ranks: {exc}") from None
        return (lambda jd: not ranks.isdisjoint(jd.rankset)), ALL_STATES & ~(S.NEW | S.PENDING)
    if op in TIME_OPS:
        return _time_op(op, values), ALL_STATES
    raise _bad(f"unknown operator '{op}' (expected one of {', '.join(OPERATORS)})")
