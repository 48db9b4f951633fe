"""The `accounting` service on rank 0 (registered through the `flux.broker` hook).

Reads (any user): `accounting.view_user {username}`, `accounting.list_users {}`,
`accounting.list_banks {inactive?}`. Changes (instance owner only):
`accounting.add_bank {bank, shares, parent_bank?, priority?}`,
`accounting.add_user {username, bank, userid?, shares?, max_running_jobs?,
max_active_jobs?, queues?}`, `accounting.delete_user {username, bank, force?}`,
`accounting.edit_user {username, bank?, changes{}}`, `accounting.update_usage {}`.
A change takes effect at once: fair shares, limits and pending priorities are
recomputed. Errors name the problem (unknown user, bank, field) and store nothing.
"""

from __future__ import annotations

import errno
from typing import Any

from flux.core.broker.service import Service, method, payload_of
from flux.core.errors import FluxError
from flux.core.hookspecs import hookimpl

from flux_accounting import state, views
from flux_accounting.db import AccountingError


def _opt(p: dict, key: str, typ: type | tuple, default: Any = None) -> Any:
    v = p.get(key, default)
    if v is not None and (not isinstance(v, typ) or (typ is int and isinstance(v, bool))):
        raise FluxError(errno.EPROTO, f"field '{key}' has the wrong type ({type(v).__name__})")
    return v


class AccountingService(Service):
    name = "accounting"

    def _acct(self) -> state.Accounting:
        try:
            acct = state.get(self.broker)
        except AccountingError as exc:
            raise FluxError(errno.EINVAL, str(exc)) from None
        if acct is None:
            raise FluxError(errno.ENOSYS, "accounting is not configured on this instance")
        return acct

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except AccountingError as exc:
            raise FluxError(exc.errno, str(exc)) from None

    # ------------------------------------------------------------ reads
    @method("view_user")
    def view_user(self, msg):
        acct = self._acct()
        p = payload_of(msg)
        return self._call(views.view_user, acct.store, acct.conf.half_life, p.get("username"),
                          acct.runtime())

    @method("list_users")
    def list_users(self, msg):
        acct = self._acct()
        return {"users": self._call(views.association_views, acct.store, acct.conf.half_life,
                                    acct.runtime())}

    @method("list_banks")
    def list_banks(self, msg):
        acct = self._acct()
        inactive = bool(_opt(payload_of(msg), "inactive", bool, False))
        return {"banks": self._call(views.list_banks, acct.store, acct.conf.half_life, inactive)}

    # ---------------------------------------------------------- changes
    @method("add_bank", owner_only=True)
    def add_bank(self, msg):
        acct = self._acct()
        p = payload_of(msg)
        self._call(acct.store.add_bank, p.get("bank"), p.get("shares", 1),
                   _opt(p, "parent_bank", str), _opt(p, "priority", (int, float), 0.0))
        acct.changed()
        return {}

    @method("add_user", owner_only=True)
    def add_user(self, msg):
        acct = self._acct()
        p = payload_of(msg)
        kw = {k: p[k] for k in ("userid", "shares", "max_running_jobs", "max_active_jobs",
                                "queues") if k in p and p[k] is not None}
        row = self._call(acct.store.add_user, p.get("username"), p.get("bank"), **kw)
        acct.changed()
        return {"userid": row["userid"]}

    @method("delete_user", owner_only=True)
    def delete_user(self, msg):
        acct = self._acct()
        p = payload_of(msg)
        self._call(acct.store.delete_user, p.get("username"), p.get("bank"),
                   bool(_opt(p, "force", bool, False)))
        acct.changed()
        return {}

    @method("edit_user", owner_only=True)
    def edit_user(self, msg):
        acct = self._acct()
        p = payload_of(msg)
        changes = _opt(p, "changes", dict, {})
        rows = self._call(acct.store.edit_user, p.get("username"), _opt(p, "bank", str), changes)
        acct.changed()
        return {"associations": len(rows)}

    @method("update_usage", owner_only=True)
    def update_usage(self, msg):
        acct = self._acct()
        n = self._call(acct.update_usage)
        return {"associations": n}


@hookimpl
def broker_services(broker):
    if broker.rank != 0 or "accounting" not in broker.conf:
        return []
    return [AccountingService(broker)]
