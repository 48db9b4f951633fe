"""`[ensemble]` configuration of one instance.

    [ensemble]
    shape = "node,core"    # levels below this instance (see shape.py); "" = a leaf
    policy = "rr"          # or "least-loaded": which child gets the next job
    batch-max = 1024       # most jobs (or events) per forwarding message
    flush-delay = 0.0      # seconds a member gathers events before sending them up
    member = true          # set by the parent on the children it starts
    parent-uri = "local://..."  # set by the parent: its rank 0, where the ensemble runs

An instance without an `[ensemble]` table is not an ensemble: nothing is loaded.
"""

from __future__ import annotations

import attrs

from flux_ensemble import shape as shapes

POLICIES = ("rr", "least-loaded")
KEYS = {"shape", "depth", "policy", "batch-max", "flush-delay", "member", "parent-uri"}


class ConfigError(ValueError):
    pass


@attrs.frozen
class EnsembleConfig:
    levels: tuple[str, ...]
    policy: str = "rr"
    batch_max: int = 1024
    flush_delay: float = 0.0
    member: bool = False
    parent_uri: str | None = None

    @property
    def has_children(self) -> bool:
        return bool(self.levels)


def from_conf(conf: dict) -> EnsembleConfig | None:
    """The instance's ensemble config, None without an `[ensemble]` table.
    Raises ConfigError naming the bad key."""
    t = conf.get("ensemble")
    if t is None:
        return None
    if not isinstance(t, dict):
        raise ConfigError("[ensemble] must be a table")
    unknown = set(t) - KEYS
    if unknown:
        raise ConfigError(f"[ensemble]: unknown key(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(KEYS))})")
    try:
        if "shape" in t and "depth" in t:
            raise ConfigError("[ensemble]: give shape or depth, not both")
        if "depth" in t:
            d = t["depth"]
            if not isinstance(d, int) or isinstance(d, bool):
                raise ConfigError(f"[ensemble] depth must be an integer, not {d!r}")
            levels = shapes.from_depth(d)
        else:
            levels = shapes.parse(t.get("shape", ""))
    except shapes.ShapeError as exc:
        raise ConfigError(f"[ensemble] {exc}") from None
    policy = t.get("policy", "rr")
    if policy not in POLICIES:
        raise ConfigError(f"[ensemble] policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    bmax = t.get("batch-max", 1024)
    if not isinstance(bmax, int) or isinstance(bmax, bool) or bmax < 1:
        raise ConfigError(f"[ensemble] batch-max must be an integer >= 1, not {bmax!r}")
    delay = t.get("flush-delay", 0.0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 10:
        raise ConfigError(f"[ensemble] flush-delay must be a number of seconds 0-10, not {delay!r}")
    member = t.get("member", False)
    if not isinstance(member, bool):
        raise ConfigError(f"[ensemble] member must be true or false, not {member!r}")
    parent_uri = t.get("parent-uri")
    if parent_uri is not None and (not isinstance(parent_uri, str) or not parent_uri):
        raise ConfigError(f"[ensemble] parent-uri must be a URI string, not {parent_uri!r}")
    return EnsembleConfig(levels, policy, bmax, float(delay), member, parent_uri)
