"""The accounting state inside the rank-0 broker, shared by the jobtap hooks and the
`accounting` service: the database, a cache of associations with their fair share, and
each association's live job counts (active, holding a run slot, held by the limit)."""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from typing import Any

import attrs
from flux.core.util.idset import count as idset_count

from flux_accounting import views
from flux_accounting.db import AccountingError, Store
from flux_accounting.policy import Config, ConfigError, decayed, parse_config, priority

HOLD = "max-running-jobs-user-limit"  # dependency description (as flux-accounting)
AUX = "accounting.assoc"
AUX_SLOT = "accounting.slot"
SCHED = "SCHED"


@attrs.define(slots=True, eq=False)
class Assoc:
    username: str
    userid: int
    bank: str
    row: dict
    fairshare: float = 1.0
    active: bool = True
    n_active: int = 0
    n_slots: int = 0  # jobs past the max-running check, not yet inactive
    held: collections.deque = attrs.Factory(collections.deque)

    @property
    def max_running(self) -> int:
        return self.row["max_running_jobs"]

    @property
    def max_active(self) -> int:
        return self.row["max_active_jobs"]

    @property
    def queues(self) -> list[str]:
        return [q for q in self.row["queues"].split(",") if q]


class Accounting:
    def __init__(self, broker: Any, conf: Config):
        self.broker = broker
        self.conf = conf
        self.store = Store(conf.db)
        self.assocs: dict[tuple[str, str], Assoc] = {}
        self.by_uid: dict[int, dict[str, Assoc]] = {}
        self.bank_priority: dict[str, float] = {}
        self.manager: Any = None
        self._update: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stale = False  # usage changed since fair shares were computed
        self.reload()

    # ------------------------------------------------------------ cache
    def runtime(self) -> dict:
        return {k: {"active_jobs": a.n_active, "running_jobs": a.n_slots,
                    "held_jobs": len(a.held)} for k, a in self.assocs.items()}

    def reload(self) -> None:
        """Re-read associations and banks and recompute fair shares; live counts stay."""
        self._stale = False
        seen = set()
        for v in views.association_views(self.store, self.conf.half_life):
            key = (v["username"], v["bank"])
            seen.add(key)
            row = self.store.association(*key)
            a = self.assocs.get(key)
            if a is None:
                a = self.assocs[key] = Assoc(v["username"], v["userid"], v["bank"], row)
            a.row, a.userid, a.active, a.fairshare = row, v["userid"], True, v["fairshare"]
        for key, a in self.assocs.items():
            if key not in seen:
                a.active = False
        self.by_uid = {}
        for a in self.assocs.values():
            if a.active:
                self.by_uid.setdefault(a.userid, {})[a.bank] = a
        self.bank_priority = {b["bank"]: b["priority"] for b in self.store.list_banks()}

    def changed(self) -> None:
        """The database changed: recompute, re-apply limits and pending priorities."""
        self.reload()
        for a in self.assocs.values():
            self.release_held(a)
        self.schedule_update(0.0)

    # ---------------------------------------------------------- lookups
    def lookup(self, job: Any) -> Assoc:
        banks = self.by_uid.get(job.userid)
        if not banks:
            raise AccountingError(
                f"user {_username(job.userid)} (uid {job.userid}) has no accounting association;"
                " an administrator must add one with `flux account add-user`")
        bank = job.system("bank")
        if bank is None:
            default = next(iter(banks.values())).row["default_bank"]
            a = banks.get(default) or next(iter(banks.values()))
        else:
            a = banks.get(bank) if isinstance(bank, str) else None
            if a is None:
                raise AccountingError(f"user {_username(job.userid)} is not a member of bank"
                                      f" {bank} (banks: {', '.join(sorted(banks))})")
        queue = job.system("queue")
        if a.queues and queue not in a.queues:
            raise AccountingError(f"user {a.username} (bank {a.bank}) may not use queue {queue}"
                                  f" (allowed: {', '.join(a.queues)})")
        return a

    def priority_of(self, job: Any, a: Assoc, now: float | None = None) -> int:
        now = time.time() if now is None else now
        if self._stale:  # a job ended since: new jobs see its usage at once
            self.reload()
        return priority(self.conf, fshare=a.fairshare, urgency=job.urgency,
                        queue=job.system("queue"), bank_priority=self.bank_priority.get(a.bank, 0.0),
                        age=now - job.t_submit)

    # ----------------------------------------------------------- limits
    def take_slot_or_hold(self, job: Any, a: Assoc) -> None:
        if a.max_running and a.n_slots >= a.max_running:
            a.held.append(job)
            self.manager.dependency_add(job, HOLD)
        else:
            a.n_slots += 1
            job.aux[AUX_SLOT] = True

    def release_held(self, a: Assoc) -> None:
        while a.held and (not a.max_running or a.n_slots < a.max_running):
            job = a.held.popleft()
            if not job.active:
                continue
            a.n_slots += 1
            job.aux[AUX_SLOT] = True
            self.manager.dependency_remove(job, HOLD)

    def job_inactive(self, job: Any, a: Assoc) -> None:
        a.n_active = max(0, a.n_active - 1)
        if job.aux.get(AUX_SLOT):
            a.n_slots = max(0, a.n_slots - 1)
        else:
            try:
                a.held.remove(job)
            except ValueError:
                pass
        if "t_run" in job.times:
            self._record_usage(job, a)
        self.release_held(a)

    def _record_usage(self, job: Any, a: Assoc) -> None:
        t_run = job.times["t_run"]
        t_end = job.times.get("t_cleanup", job.times.get("t_inactive", t_run))
        ncores = _ncores(job.R)
        cs = max(0.0, t_end - t_run) * ncores
        now = time.time()
        row = a.row
        usage = decayed(row["job_usage"], row["usage_time"], now, self.conf.half_life) + cs
        rec = {"jobid": job.id, "userid": job.userid, "username": a.username, "bank": a.bank,
               "t_submit": job.t_submit, "t_run": t_run, "t_inactive": now, "ncores": ncores,
               "core_seconds": cs}
        try:
            self.store.add_usage(rec, usage, now)
        except AccountingError as exc:
            self.broker.log(3, f"accounting: usage of job {job.id} not stored: {exc}")
            return
        row["job_usage"], row["usage_time"] = usage, now
        self._stale = True
        self.schedule_update()

    # ------------------------------------------------------- priorities
    def schedule_update(self, delay: float | None = None) -> None:
        """Recompute fair shares and the priority of every pending job, coalesced: at most
        once per update-interval after usage changes (many jobs ending together)."""
        if self._update is not None:
            if delay != 0.0:
                return
            self._update.cancel()
        loop = asyncio.get_running_loop()
        self._update = loop.call_later(min(1.0, self.conf.update_interval)
                                       if delay is None else delay, self._run_update)

    def _run_update(self) -> None:
        self._update = None
        try:
            self.reload()
        except AccountingError as exc:
            self.broker.log(3, f"accounting: {exc}")
            return
        self.reprioritize_pending()

    def reprioritize_pending(self) -> int:
        m = self.manager
        if m is None:
            return 0
        now = time.time()
        n = 0
        for job in list(m.jobs.values()):
            a = job.aux.get(AUX)
            if job.state == SCHED and a is not None:
                p = self.priority_of(job, a, now)
                if p != job.priority:
                    m.reprioritize(job, p)
                    n += 1
        return n

    def start_timer(self) -> None:
        """Age grows while jobs wait: recompute pending priorities every update-interval."""
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.conf.update_interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._run_update()
        if self.manager is not None and any(j.aux.get(AUX) is not None for j in self.manager.jobs.values()):
            self.start_timer()

    # ------------------------------------------------------------ usage
    def update_usage(self) -> int:
        """Rebuild every association's decayed usage from the job records (e.g. after
        the half-life changed) and apply it."""
        now = time.time()
        hl = self.conf.half_life
        totals: dict[tuple[str, str], float] = {}
        for r in self.store.job_records():
            key = (r["username"], r["bank"])
            totals[key] = totals.get(key, 0.0) + decayed(r["core_seconds"], r["t_inactive"], now, hl)
        rows = self.store.associations(inactive=True)
        self.store.set_usages([(r["username"], r["bank"], totals.get((r["username"], r["bank"]), 0.0),
                                now) for r in rows])
        self.changed()
        return len(rows)


def _ncores(R: Any) -> int:
    n = 0
    try:
        for entry in R["execution"]["R_lite"]:
            ranks = idset_count(str(entry["rank"]))
            n += ranks * idset_count(str(entry["children"].get("core", "")))
    except (KeyError, TypeError, ValueError, AttributeError):
        return 1
    return n or 1


def _username(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# one Accounting per broker (the jobtap hooks and the service find it from there)
_by_broker: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get(broker: Any) -> Accounting | None:
    """The broker's Accounting; None when not configured. A configuration or database
    error is raised (as AccountingError) to every caller, so jobs are refused clearly."""
    st = _by_broker.get(broker)
    if st is None:
        try:
            conf = parse_config(broker.conf)
            st = Accounting(broker, conf) if conf is not None else False
        except (ConfigError, AccountingError) as exc:
            st = AccountingError(str(exc))
            broker.log(3, f"accounting: {exc}; every job is refused")
        _by_broker[broker] = st
    if isinstance(st, AccountingError):
        raise st
    return st or None
