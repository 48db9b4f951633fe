"""The `dependencies` jobtap plugin (group `flux.jobtap`): RFC 26 job dependencies.

Jobspec form: ``attributes.system.dependencies = [{"scheme": S, "value": V}, ...]``
(the CLI's ``--dependency=S:V``). Schemes (SPEC 7.6):

| scheme | held until | eventlog description |
|---|---|---|
| `afterstart` (`after`) | the target has started | `after-start=V` |
| `afterany` | the target is inactive, whatever the outcome | `after-finish=V` |
| `afterok` | the target is inactive and succeeded | `after-success=V` |
| `afternotok` | the target ran and is inactive without success | `after-failure=V` |
| `afterexcept` | the target ran and ended by a fatal exception | `after-except=V` |
| `singleton` | no other active job of this user has the same job name | `singleton` |
| `begin-time` | the wall clock reaches the epoch time V | `begin-time=%.3f` |

At submission (`jobtap_validate`) a job is rejected for an unknown scheme, a target id
that does not parse (any encoding), a target that is neither active nor still in the
inactive cache, a target of another user, a singleton without an explicit job name, a
bad begin-time, or an already inactive target whose outcome can never satisfy it.

Each outstanding dependency is a `dependency-add` event; it is satisfied by the matching
`dependency-remove`, and the job leaves DEPEND once none are left. A dependency that
becomes unsatisfiable (e.g. `afterok` on a job that failed, or any `after*` but
`afterany` on a job that never ran) raises a fatal `dependency` exception on the
dependent job whose note names the dependency and why.

Cost: every job manager event costs O(1) here (dict lookups); the work at a target's
`start` or INACTIVE is proportional to the jobs waiting on it, found through an index
target id -> waiting dependencies. begin-time uses one loop timer per job (no polling).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import deque
from typing import Any

import attrs
from flux.core.hookspecs import hookimpl
from flux.core.job import fluid

DEPEND = "DEPEND"
INACTIVE = "INACTIVE"

AFTER_START, AFTER_FINISH, AFTER_SUCCESS, AFTER_FAILURE, AFTER_EXCEPT = (
    "after-start", "after-finish", "after-success", "after-failure", "after-except")
AFTER_SCHEMES = {
    "after": AFTER_START,
    "afterstart": AFTER_START,
    "afterany": AFTER_FINISH,
    "afterok": AFTER_SUCCESS,
    "afternotok": AFTER_FAILURE,
    "afterexcept": AFTER_EXCEPT,
}
SCHEMES = (*AFTER_SCHEMES, "begin-time", "singleton")
AUX_KEY = "dependencies.parsed"


@attrs.define(slots=True, frozen=True)
class Dep:
    """One parsed dependency of a job."""

    scheme: str
    value: str
    description: str
    kind: str = ""  # for after*: AFTER_START, ...
    target: int = 0  # for after*
    when: float = 0.0  # for begin-time


@attrs.define(slots=True, eq=False)
class Waiting:
    """An outstanding after* dependency: `job` waits on `target`."""

    job: Any
    dep: Dep
    live: bool = True


# ----------------------------------------------------------------- verdicts


def _failure(t: Any) -> str:
    if t.exception is not None:
        note = t.exception.get("note")
        return f"failed (exception type={t.exception.get('type')}{': ' + note if note else ''})"
    st = t.status or 0
    if st & 0x7F:
        return f"failed (killed by signal {st & 0x7F})"
    return f"failed (exit code {st >> 8})"


def _end_event(t: Any) -> str | None:
    """Name of the event that moved the job to CLEANUP (`finish` or `exception`)."""
    for e in t.eventlog:
        name = e["name"]
        if name == "finish":
            return name
        if name == "exception" and (e.get("context") or {}).get("severity", 0) == 0:
            return name
    return None


def verdict(kind: str, t: Any) -> str | None:
    """None if the inactive job `t` satisfies a dependency of this kind, else why not."""
    if kind == AFTER_FINISH:
        return None
    if "t_run" not in t.times:  # never allocated: only afterany is satisfied
        return "never started"
    if kind == AFTER_START:
        return None if t.started else "never started"
    if kind == AFTER_SUCCESS:
        return None if t.success else _failure(t)
    if kind == AFTER_FAILURE:
        return "succeeded" if t.success else None
    if kind == AFTER_EXCEPT:
        if not t.success and _end_event(t) == "exception":
            return None
        return "succeeded" if t.success else "ended without a fatal exception"
    return "unknown dependency type"


# ------------------------------------------------------------------ parsing


def _job_name(job: Any) -> str | None:
    """The explicit job name (system.job.name), or None: singleton ignores default names."""
    j = job.system("job")
    name = j.get("name") if isinstance(j, dict) else None
    return name if isinstance(name, str) else None


def parse(job: Any, manager: Any) -> list[Dep]:
    """The job's dependencies, checked; ValueError names the bad one."""
    deps = job.system("dependencies")
    if deps is None:
        return []
    if not isinstance(deps, list):
        raise ValueError("attributes.system.dependencies must be an array of {scheme, value}")
    out: list[Dep] = []
    for i, d in enumerate(deps):
        if not isinstance(d, dict) or "scheme" not in d or "value" not in d:
            raise ValueError(f"dependency {i}: must be an object with 'scheme' and 'value',"
                             f" not {d!r}")
        scheme, value = d["scheme"], d["value"]
        value = value if isinstance(value, str) else str(value)
        spec = f"{scheme}:{value}"
        if scheme in AFTER_SCHEMES:
            out.append(_parse_after(job, manager, scheme, value, spec))
        elif scheme == "begin-time":
            try:
                when = float(value)
            except ValueError:
                when = math.nan
            if not math.isfinite(when) or when < 0:
                raise ValueError(f"dependency {spec}: begin-time must be a time in seconds"
                                 f" since the epoch, not '{value}'")
            out.append(Dep(scheme, value, f"begin-time={when:.3f}", when=when))
        elif scheme == "singleton":
            if _job_name(job) is None:
                raise ValueError("dependency singleton: a singleton job needs an explicit"
                                 " job name (--job-name)")
            out.append(Dep(scheme, value, "singleton"))
        else:
            raise ValueError(f"dependency {spec}: unknown dependency scheme '{scheme}'"
                             f" (known: {', '.join(SCHEMES)})")
    return out


def _parse_after(job: Any, manager: Any, scheme: str, value: str, spec: str) -> Dep:
    try:
        target = fluid.parse(value)
    except (ValueError, TypeError):
        raise ValueError(f"dependency {spec}: '{value}' is not a valid job id") from None
    t = manager.jobs.get(target) or manager.inactive.get(target)
    if t is None:
        raise ValueError(f"dependency {spec}: job {value} not found (it must be active"
                         " or recently inactive)")
    if t.userid != job.userid:
        raise ValueError(f"dependency {spec}: permission denied: job {value} belongs to"
                         " another user")
    kind = AFTER_SCHEMES[scheme]
    dep = Dep(scheme, value, f"{kind}={value}", kind=kind, target=target)
    if not t.active:
        why = verdict(kind, t)
        if why is not None:
            raise ValueError(f"dependency {spec} can never be satisfied: job {value} {why}")
    return dep


# -------------------------------------------------------------------- state


class Dependencies:
    """The plugin's bookkeeping for one job manager."""

    def __init__(self, manager: Any):
        self.manager = manager
        self.waiting: dict[int, list[Waiting]] = {}  # target id -> dependencies on it
        self.held: dict[int, list[Waiting]] = {}  # dependent id -> its outstanding after*
        self.timers: dict[int, list[asyncio.TimerHandle]] = {}  # dependent id -> begin-time
        self.named: dict[int, tuple[int, str]] = {}  # counted job id -> (userid, name)
        self.active: dict[tuple[int, str], int] = {}  # (userid, name) -> active jobs
        self.singletons: dict[tuple[int, str], deque] = {}  # (userid, name) -> held jobs

    # ---------------------------------------------------------- DEPEND entry
    def enter_depend(self, job: Any) -> None:
        deps = job.aux.pop(AUX_KEY, None)
        if deps is None:  # not validated here (e.g. plugin loaded later): check now
            try:
                deps = parse(job, self.manager)
            except ValueError as exc:
                self._fail(job, str(exc))
                return
        key = None
        name = _job_name(job)
        if name is not None:
            key = (job.userid, name)
        # first add every dependency, so an immediately satisfied one cannot empty the
        # set (and release the job) before the others are added
        added: list[Dep] = []
        for dep in deps:
            if dep.description in job.dependencies:
                continue  # the same dependency twice
            if dep.scheme == "singleton":
                if key is None or not self.active.get(key):
                    continue  # no other active job of that name: nothing to wait for
                self.singletons.setdefault(key, deque()).append(job)
            self.manager.dependency_add(job, dep.description)
            added.append(dep)
        if key is not None:  # counted after the singleton check: it excludes this job
            self.named[job.id] = key
            self.active[key] = self.active.get(key, 0) + 1
        for dep in added:
            if job.state != DEPEND:
                return  # failed (the CLEANUP transition cleaned up) or released
            if dep.kind:
                self._after(job, dep)
            elif dep.scheme == "begin-time":
                loop = asyncio.get_running_loop()
                delay = max(0.0, dep.when - time.time())
                h = loop.call_at(loop.time() + delay, self._begin, job, dep.description)
                self.timers.setdefault(job.id, []).append(h)

    def _after(self, job: Any, dep: Dep) -> None:
        m = self.manager
        t = m.jobs.get(dep.target) or m.inactive.get(dep.target)
        if t is None:
            self._fail(job, f"dependency {dep.description} can never be satisfied:"
                            f" job {dep.value} was purged")
        elif not t.active:
            self._resolve(job, dep, verdict(dep.kind, t))
        elif dep.kind == AFTER_START and t.started:
            m.dependency_remove(job, dep.description)
        else:
            w = Waiting(job, dep)
            self.waiting.setdefault(dep.target, []).append(w)
            self.held.setdefault(job.id, []).append(w)

    def _begin(self, job: Any, description: str) -> None:
        # the handle stays in self.timers until the job leaves DEPEND (cancel is harmless)
        if job.state == DEPEND:
            self.manager.dependency_remove(job, description)

    def _resolve(self, job: Any, dep: Dep, why: str | None) -> None:
        if job.state != DEPEND:
            return
        if why is None:
            self.manager.dependency_remove(job, dep.description)
        else:
            self._fail(job, f"dependency {dep.description} can never be satisfied:"
                            f" job {dep.value} {why}")

    def _fail(self, job: Any, note: str) -> None:
        if job.active:
            self.manager.post(job, "exception", {"type": "dependency", "severity": 0,
                                                 "note": note})

    # ------------------------------------------------------- target events
    def target_started(self, t: Any) -> None:
        ws = self.waiting.get(t.id)
        if not ws:
            return
        ready = [w for w in ws if w.dep.kind == AFTER_START]
        if not ready:
            return
        ws[:] = [w for w in ws if w.dep.kind != AFTER_START]
        if not ws:
            del self.waiting[t.id]
        for w in ready:
            if w.live:
                self._drop(w)
                self._resolve(w.job, w.dep, None)

    def target_inactive(self, t: Any) -> None:
        ws = self.waiting.pop(t.id, None)
        if ws:
            for w in ws:
                if w.live:  # not dropped meanwhile by an earlier release or failure
                    self._drop(w)
                    self._resolve(w.job, w.dep, verdict(w.dep.kind, t))
        key = self.named.pop(t.id, None)
        if key is not None:
            self._uncount(key)

    def _uncount(self, key: tuple[int, str]) -> None:
        n = self.active.get(key, 0) - 1
        if n > 0:
            self.active[key] = n
        else:
            self.active.pop(key, None)
        q = self.singletons.get(key)
        if q and n == len(q):  # every active job of that name is a held singleton
            job = q.popleft()
            if not q:
                del self.singletons[key]
            if job.state == DEPEND:
                self.manager.dependency_remove(job, "singleton")

    def _drop(self, w: Waiting) -> None:
        """Forget a resolved dependency on the dependent's side."""
        w.live = False
        mine = self.held.get(w.job.id)
        if mine is not None:
            try:
                mine.remove(w)
            except ValueError:
                pass
            if not mine:
                del self.held[w.job.id]

    # ---------------------------------------------------- dependent leaves DEPEND
    def left_depend(self, job: Any) -> None:
        """Released or failed: drop what it still waited for (targets, timers, singleton)."""
        for w in self.held.pop(job.id, ()):
            w.live = False
            ws = self.waiting.get(w.dep.target)
            if ws is not None:
                try:
                    ws.remove(w)
                except ValueError:
                    pass
                if not ws:
                    del self.waiting[w.dep.target]
        for h in self.timers.pop(job.id, ()):
            h.cancel()
        if "singleton" in job.dependencies:
            key = self.named.get(job.id)
            q = self.singletons.get(key) if key is not None else None
            if q is not None:
                try:
                    q.remove(job)
                except ValueError:
                    pass
                if not q:
                    del self.singletons[key]

    def stats(self) -> dict:
        """Sizes of the indexes (for tests and debugging)."""
        return {"waiting": sum(len(v) for v in self.waiting.values()), "held": len(self.held),
                "timers": len(self.timers), "named": len(self.named),
                "singletons": sum(len(q) for q in self.singletons.values())}


_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def state_of(manager: Any) -> Dependencies:
    st = _states.get(manager)
    if st is None:
        st = _states[manager] = Dependencies(manager)
    return st


# -------------------------------------------------------------------- hooks


@hookimpl
def jobtap_validate(job: Any, manager: Any) -> None:
    """Reject bad dependencies at submission; keep the parsed form for DEPEND."""
    if job.system("dependencies") is None:
        return
    job.aux[AUX_KEY] = parse(job, manager)


@hookimpl
def jobtap_dependencies(job: Any, dependencies: list, manager: Any) -> None:
    st = state_of(manager)
    try:
        st.enter_depend(job)
    except Exception as exc:  # noqa: BLE001 - never leave a job stuck in DEPEND
        st._fail(job, f"dependency plugin error: {exc!r}")
        raise


@hookimpl
def jobtap_state(job: Any, state: str, prev: str, manager: Any) -> None:
    st = _states.get(manager)
    if st is None:
        return
    if prev == DEPEND:
        st.left_depend(job)
    if state == INACTIVE:
        st.target_inactive(job)


@hookimpl
def jobtap_event(job: Any, name: str, context: dict, manager: Any) -> None:
    if name == "start":
        st = _states.get(manager)
        if st is not None:
            st.target_started(job)
