"""What `accounting.view_user`, `list_users` and `list_banks` answer, computed from the
database (and the broker's live job counts when there is one)."""

from __future__ import annotations

import time
from typing import Any

from flux_accounting.db import AccountingError, Store
from flux_accounting.policy import bank_shares, decayed, fairshare


def association_views(store: Store, half_life: float, runtime: dict | None = None,
                      username: str | None = None, now: float | None = None) -> list[dict]:
    """Active associations (of one user) with decayed usage, normalized shares and fair
    share; `runtime` maps (username, bank) to live counts."""
    now = time.time() if now is None else now
    allrows = store.associations()
    nbank = bank_shares(store.list_banks())
    usage = {(r["username"], r["bank"]): decayed(r["job_usage"], r["usage_time"], now, half_life)
             for r in allrows}
    total = sum(usage.values())
    bank_totals: dict[str, int] = {}
    for r in allrows:
        bank_totals[r["bank"]] = bank_totals.get(r["bank"], 0) + r["shares"]
    out = []
    for r in allrows:
        if username is not None and r["username"] != username:
            continue
        key = (r["username"], r["bank"])
        bt = bank_totals.get(r["bank"], 0)
        ns = nbank.get(r["bank"], 0.0) * (r["shares"] / bt if bt else 0.0)
        v: dict[str, Any] = {k: r[k] for k in ("username", "userid", "bank", "default_bank",
                                               "shares", "max_running_jobs", "max_active_jobs",
                                               "queues")}
        v["job_usage"] = round(usage[key], 3)
        v["norm_shares"] = round(ns, 6)
        v["fairshare"] = round(fairshare(usage[key], total, ns), 6)
        if runtime is not None:
            v.update(runtime.get(key, {"active_jobs": 0, "running_jobs": 0, "held_jobs": 0}))
        out.append(v)
    return out


def view_user(store: Store, half_life: float, username: Any, runtime: dict | None = None) -> dict:
    if not isinstance(username, str) or not username:
        raise AccountingError("view_user: a username is required")
    assocs = association_views(store, half_life, runtime, username)
    if not assocs:
        raise AccountingError(f"user {username} is not in the accounting database", 2)
    return {"username": username, "userid": assocs[0]["userid"], "associations": assocs}


def list_banks(store: Store, half_life: float, inactive: bool = False) -> list[dict]:
    now = time.time()
    usage: dict[str, float] = {}
    for r in store.associations():
        usage[r["bank"]] = usage.get(r["bank"], 0.0) + decayed(r["job_usage"], r["usage_time"],
                                                               now, half_life)
    banks = store.list_banks(inactive)
    parents = {b["bank"]: b["parent_bank"] for b in banks}
    # a parent bank's usage is the sum of its sub-banks'
    for bank, u in list(usage.items()):
        p = parents.get(bank)
        while p is not None:
            usage[p] = usage.get(p, 0.0) + u
            p = parents.get(p)
    return [{"bank": b["bank"], "parent_bank": b["parent_bank"] or "", "shares": b["shares"],
             "priority": b["priority"], "active": bool(b["active"]),
             "job_usage": round(usage.get(b["bank"], 0.0), 3)} for b in banks]
