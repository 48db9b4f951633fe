"""What a V1 jobspec asks for, reduced to counts the simple scheduler can place."""

from __future__ import annotations

import attrs


class Unsupported(ValueError):
    """A request shape this scheduler cannot place."""


def _count(v, what: str) -> int:
    if isinstance(v, dict):
        v = v.get("min")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Unsupported(f"{what} count must be a positive integer")
    return v


@attrs.define(slots=True)
class Request:
    nnodes: int  # 0 = any number of nodes
    nslots: int  # total slots
    slots_per_node: int  # with nnodes > 0
    cores: int  # per slot
    gpus: int  # per slot
    exclusive: bool
    duration: float

    @classmethod
    def from_jobspec(cls, jobspec: dict) -> Request:
        try:
            res = jobspec["resources"]
            top = res[0]
        except (KeyError, IndexError, TypeError):
            raise Unsupported("jobspec has no resources") from None
        nnodes = 0
        exclusive = False
        per_node = 1
        if top.get("type") == "node":
            nnodes = _count(top.get("count"), "node")
            exclusive = bool(top.get("exclusive", False))
            kids = top.get("with") or []
            if len(kids) != 1 or kids[0].get("type") != "slot":
                raise Unsupported("a node must contain exactly one slot")
            slot = kids[0]
            per_node = _count(slot.get("count"), "slot")
            nslots = per_node * nnodes
        elif top.get("type") == "slot":
            slot = top
            nslots = _count(slot.get("count"), "slot")
        else:
            raise Unsupported(f"top-level resource must be node or slot, not {top.get('type')!r}")
        cores = gpus = 0
        for child in slot.get("with") or []:
            t = child.get("type")
            if t == "core":
                cores += _count(child.get("count"), "core")
            elif t == "gpu":
                gpus += _count(child.get("count"), "gpu")
            else:
                raise Unsupported(f"the simple scheduler cannot allocate '{t}' resources")
        if cores < 1:
            raise Unsupported("each slot needs at least one core")
        try:
            duration = float(jobspec["attributes"]["system"].get("duration", 0) or 0)
        except (KeyError, TypeError, AttributeError, ValueError):
            duration = 0.0
        return cls(nnodes, nslots, per_node, cores, gpus, exclusive, duration)
