"""Configuration (`[accounting]`), fair share and the multi-factor priority.

    [accounting]
    db = "/var/lib/flux/accounting.db"  # required; created if missing
    half-life = "7d"          # decay of past usage (FSD)
    max-age = "7d"            # the age factor reaches 1 at this age (FSD)
    update-interval = "30s"   # pending priorities are recomputed (age, usage) this often

    [accounting.weights]      # priority = sum of factor x weight
    fairshare = 100000
    queue = 10000
    bank = 0
    urgency = 1000            # applied to (urgency - 16)
    age = 1000

    [accounting.queue-priority]   # the queue factor of each queue (default 0)
    debug = 1

Fair share (the classic form): with S the association's normalized shares (its shares
among its bank's users, times the bank's normalized shares down the bank tree) and U its
fraction of all decayed usage, F = 2^(-U/S). F is 1 with no usage, 0.5 when usage
matches shares, and falls toward 0 with over-use. Usage decays by half every half-life:
u(t) = u(t0) * 0.5^((t - t0) / half-life).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs
from flux.core.util.fsd import parse_fsd

PRIORITY_MAX = 4294967295
DEFAULT_WEIGHTS = {"fairshare": 100000, "queue": 10000, "bank": 0, "urgency": 1000, "age": 1000}


class ConfigError(ValueError):
    def __init__(self, msg: str):
        super().__init__(f"instance configuration error: {msg}")


@attrs.define(slots=True, frozen=True)
class Config:
    db: str
    half_life: float = 7 * 86400.0
    max_age: float = 7 * 86400.0
    update_interval: float = 30.0
    weights: dict = attrs.Factory(lambda: dict(DEFAULT_WEIGHTS))
    queue_priority: dict = attrs.Factory(dict)


def _fsd(table: dict, key: str, default: float, positive: bool = True) -> float:
    if key not in table:
        return default
    try:
        v = parse_fsd(table[key])
    except ValueError as exc:
        raise ConfigError(f"accounting.{key}: {exc}") from None
    if positive and (v <= 0 or math.isinf(v)):
        raise ConfigError(f"accounting.{key} must be a finite duration > 0, not {table[key]!r}")
    return v


def parse_config(conf: dict) -> Config | None:
    """None when accounting is not configured (no `[accounting]` table)."""
    t = (conf or {}).get("accounting")
    if t is None:
        return None
    if not isinstance(t, dict):
        raise ConfigError(f"accounting must be a table, not {t!r}")
    known = {"db", "half-life", "max-age", "update-interval", "weights", "queue-priority"}
    unknown = sorted(set(t) - known)
    if unknown:
        raise ConfigError(f"accounting: unknown key(s) {', '.join(unknown)}"
                          f" (known: {', '.join(sorted(known))})")
    db = t.get("db")
    if not isinstance(db, str) or not db:
        raise ConfigError("accounting.db (the path of the accounting database) is required")
    weights = dict(DEFAULT_WEIGHTS)
    w = t.get("weights", {})
    if not isinstance(w, dict):
        raise ConfigError(f"accounting.weights must be a table, not {w!r}")
    for k, v in w.items():
        if k not in DEFAULT_WEIGHTS:
            raise ConfigError(f"accounting.weights.{k}: unknown factor"
                              f" (factors: {', '.join(DEFAULT_WEIGHTS)})")
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ConfigError(f"accounting.weights.{k} must be a number >= 0, not {v!r}")
        weights[k] = v
    qp = t.get("queue-priority", {})
    if not isinstance(qp, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in qp.values()):
        raise ConfigError(f"accounting.queue-priority must map queue names to numbers, not {qp!r}")
    return Config(db=db, half_life=_fsd(t, "half-life", 7 * 86400.0),
                  max_age=_fsd(t, "max-age", 7 * 86400.0),
                  update_interval=_fsd(t, "update-interval", 30.0),
                  weights=weights, queue_priority=dict(qp))


def decayed(usage: float, since: float, now: float, half_life: float) -> float:
    if usage <= 0:
        return 0.0
    return usage * 0.5 ** (max(0.0, now - since) / half_life)


def bank_shares(banks: Iterable[dict]) -> dict[str, float]:
    """Normalized shares of each active bank (products down the tree; roots share 1)."""
    banks = [b for b in banks if b["active"]]
    children: dict[Any, list[dict]] = {}
    for b in banks:
        children.setdefault(b["parent_bank"], []).append(b)
    out: dict[str, float] = {}

    def walk(parent: Any, share: float) -> None:
        kids = children.get(parent, [])
        total = sum(k["shares"] for k in kids)
        for k in kids:
            s = share * (k["shares"] / total if total else 0.0)
            out[k["bank"]] = s
            walk(k["bank"], s)

    walk(None, 1.0)
    return out


def fairshare(usage: float, total_usage: float, norm_shares: float) -> float:
    if norm_shares <= 0:
        return 0.0
    u = usage / total_usage if total_usage > 0 else 0.0
    return 2.0 ** (-u / norm_shares)


def priority(conf: Config, *, fshare: float, urgency: int, queue: Any, bank_priority: float,
             age: float) -> int:
    """The job's priority; urgency 0 holds (0) and 31 expedites (the maximum), as RFC 30."""
    if urgency == 0:
        return 0
    if urgency == 31:
        return PRIORITY_MAX
    w = conf.weights
    qf = conf.queue_priority.get(queue, 0) if isinstance(queue, str) else 0
    af = min(1.0, max(0.0, age) / conf.max_age)
    p = (w["fairshare"] * fshare + w["queue"] * qf + w["bank"] * bank_priority
         + w["urgency"] * (urgency - 16) + w["age"] * af)
    # 0 would mean "held": a computed priority never goes below 1
    return int(min(PRIORITY_MAX - 1, max(1, round(p))))
