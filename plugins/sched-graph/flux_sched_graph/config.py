"""The graph scheduler's settings: `[sched-graph]` in the instance config, overridden by
broker attributes `sched-graph.*` (`flux start -S sched-graph.queue-policy=easy`).

    [sched-graph]
    queue-policy = "hybrid"          # fcfs (default), easy, conservative, hybrid, or a site's
    match-policy = "lonode"          # the graph's default when unset
    match-format = "rv1"             # rv1 (R + JGF under `scheduling`, default) or rv1_nosched
    [sched-graph.queue-params]
    queue-depth = 64
    reservation-depth = 8

`queue-params` may also be a string `"queue-depth=64,reservation-depth=8"` (the only
form an attribute can take).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

KEYS = ("queue-policy", "match-policy", "match-format", "queue-params")
MATCH_FORMATS = ("rv1", "rv1_nosched")


def parse_params(text: Any, where: str) -> dict[str, Any]:
    """`{k: v}` from a table or a `k=v,k2=v2` string."""
    if isinstance(text, Mapping):
        return dict(text)
    if not isinstance(text, str):
        raise ValueError(f"{where} must be a table or a 'key=value,...' string")
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{where}: '{item}' is not key=value")
        out[key.strip()] = value.strip()
    return out


@attrs.define
class SchedConfig:
    queue_policy: str = "fcfs"
    match_policy: str | None = None
    match_format: str = "rv1"
    queue_params: dict[str, Any] = attrs.Factory(dict)

    @classmethod
    def from_instance(cls, conf: Mapping, attrs_get) -> SchedConfig:
        """From the config table and an attribute getter (name -> str | None)."""
        table = conf.get("sched-graph", {}) or {}
        if not isinstance(table, Mapping):
            raise ValueError("[sched-graph] must be a table")
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise ValueError(f"[sched-graph]: unknown key '{unknown[0]}' (valid: {', '.join(KEYS)})")
        values = dict(table)
        for key in KEYS:
            v = attrs_get(f"sched-graph.{key}")
            if v is not None and v != "":
                values[key] = v
        out = cls()
        if "queue-policy" in values:
            out.queue_policy = _name(values["queue-policy"], "queue-policy")
        if "match-policy" in values:
            out.match_policy = _name(values["match-policy"], "match-policy")
        if "match-format" in values:
            fmt = _name(values["match-format"], "match-format")
            if fmt not in MATCH_FORMATS:
                raise ValueError(f"sched-graph.match-format must be one of {', '.join(MATCH_FORMATS)},"
                                 f" not '{fmt}'")
            out.match_format = fmt
        if "queue-params" in values:
            out.queue_params = parse_params(values["queue-params"], "sched-graph.queue-params")
        return out


def _name(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"sched-graph.{key} must be a non-empty string")
    return v.strip()
