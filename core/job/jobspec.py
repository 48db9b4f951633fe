"""Jobspec validation and typed model (RFC 14 canonical, RFC 25 V1; SPEC 2).

The wire form of a jobspec is a JSON object (a ``dict`` here).  This module is pure and
kernel-side, used by ingest, the job manager, schedulers and the SDK alike:

- :func:`validate` checks a dict against the canonical rules (any resource type, count
  ranges) or, with ``v1=True``, the V1 rules (node/slot/core/gpu in the four V1 shapes,
  one task, ``attributes.system.duration`` required).  It raises :class:`JobspecError`
  at the first problem, naming where it is (``resources[0].with[0].count: ...``).  It is
  hand-written, not schema-driven, because it runs for every submitted job.
- :func:`resource_walk`, :func:`resource_counts` and :func:`slot_counts` summarize the
  resource request (for feasibility checks, ``flux jobs`` columns and simple schedulers).
- :class:`JobspecModel` and friends (in :mod:`flux.core.job.jobspec_model`, loaded on
  first use so that importing this module stays cheap) are attrs classes for typed
  access; :func:`structure` and :func:`unstructure` convert with cattrs.
"""

from __future__ import annotations

import math
from collections import defaultdict, namedtuple
from collections.abc import Iterator, Mapping

from flux.core.util import hostlist as _hostlist
from flux.core.util import idset as _idset

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

TOP_LEVEL_KEYS = ("resources", "tasks", "attributes", "version")
V1_RESOURCE_TYPES = ("node", "slot", "core", "gpu")
#: resource types whose integer count must be at least 1 (others may be 0)
POSITIVE_COUNT_TYPES = ("node", "slot", "core")
RANGE_OPERATORS = ("+", "*", "^")
_RESOURCE_KEYS = frozenset(("type", "count", "with", "label", "exclusive", "unit", "id"))
_TASK_KEYS = frozenset(("command", "slot", "count", "attributes", "distribution"))
_TASK_COUNT_KEYS = frozenset(("per_slot", "per_resource", "total"))
_RANGE_KEYS = frozenset(("min", "max", "operator", "operand"))
_CONSTRAINT_BAD_CHARS = frozenset("!&'\"^`|()")


class JobspecError(ValueError, TypeError):
    """An invalid jobspec.  The message names the problem and where it is.

    It is both a ``ValueError`` and a ``TypeError`` because flux-core raises either,
    depending on the problem, and callers catch one or the other.
    """


def _tn(v: Any) -> str:
    """JSON type name of a value, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    return type(v).__name__


def _show(v: Any) -> str:
    s = repr(v) if isinstance(v, str) else str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ------------------------------------------------------------------- counts


def _check_range(r: Mapping, where: str) -> None:
    if "min" not in r:
        raise JobspecError(f"{where}: a count range needs 'min'")
    for key in r:
        if key not in _RANGE_KEYS:
            raise JobspecError(f"{where}: unknown key '{key}' in count range"
                               " (allowed: min, max, operator, operand)")
    for key in ("min", "max", "operand"):
        if key in r:
            v = r[key]
            if not _is_int(v):
                raise JobspecError(f"{where}.{key} must be an integer, not {_tn(v)} {_show(v)}")
            if v < 1:
                raise JobspecError(f"{where}.{key} must be >= 1, not {v}")
    if "max" in r and r["max"] < r["min"]:
        raise JobspecError(f"{where}: max ({r['max']}) must be >= min ({r['min']})")
    if ("operator" in r) != ("operand" in r):
        raise JobspecError(f"{where}: operator and operand must be given together")
    if "operator" in r:
        op = r["operator"]
        if op not in RANGE_OPERATORS:
            raise JobspecError(f"{where}.operator must be one of '+', '*', '^', not {_show(op)}")
        if op in ("*", "^") and r["operand"] < 2:
            raise JobspecError(f"{where}.operand must be >= 2 for operator '{op}'")
        if op == "^" and r["min"] < 2:
            raise JobspecError(f"{where}.min must be >= 2 for operator '^'")


def parse_range_string(text: str) -> dict:
    """An RFC 45 range string (``1-5:2:*``, ``8+``, ``[100+]``, ``1-4:2``) as a count dict
    ``{min, max?, operand?, operator?}``.  ValueError if malformed (not range-checked)."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    fields = s.split(":")
    if len(fields) > 3:
        raise ValueError(f"invalid range string '{text}': too many ':' fields")
    head = fields[0]
    out: dict[str, Any] = {}
    if head.endswith("+"):
        lo = head[:-1]
        if not (lo.isascii() and lo.isdigit()):
            raise ValueError(f"invalid range string '{text}': bad minimum '{lo}'")
        out["min"] = int(lo)
    elif "-" in head:
        lo, _, hi = head.partition("-")
        if not (lo.isascii() and lo.isdigit() and hi.isascii() and hi.isdigit()):
            raise ValueError(f"invalid range string '{text}': bad range '{head}'")
        out["min"], out["max"] = int(lo), int(hi)
    else:
        raise ValueError(f"invalid range string '{text}': expected 'min-max' or 'min+'")
    if len(fields) > 1:
        operand = fields[1]
        if not (operand.isascii() and operand.isdigit()):
            raise ValueError(f"invalid range string '{text}': bad operand '{operand}'")
        out["operand"] = int(operand)
        out["operator"] = fields[2] if len(fields) > 2 else "+"
    return out


def _check_count_string(count: str, rtype: str, where: str) -> None:
    try:
        ranges = _idset.decode_ranges(count)
    except ValueError:
        ranges = None
    if ranges is not None:
        if not ranges:
            raise JobspecError(f"{where}: empty count string")
        if rtype in POSITIVE_COUNT_TYPES and ranges[0][0] < 1:
            raise JobspecError(f"{where}: {rtype} count must be >= 1")
        return
    try:
        r = parse_range_string(count)
    except ValueError as exc:
        raise JobspecError(f"{where}: count string must be an idset or a range string"
                           f" (min-max:operand:operator or min+): {exc}") from None
    _check_range(r, where)


def _check_count(count: Any, rtype: str, where: str, v1: bool) -> None:
    if _is_int(count):
        if rtype in POSITIVE_COUNT_TYPES:
            if count < 1:
                raise JobspecError(f"{where} must be >= 1 for {rtype}, not {count}")
        elif count < 0:
            raise JobspecError(f"{where} must be >= 0, not {count}")
        return
    if v1:
        raise JobspecError(f"{where} must be an integer in jobspec V1, not {_tn(count)} {_show(count)}")
    if isinstance(count, Mapping):
        _check_range(count, where)
    elif isinstance(count, str):
        _check_count_string(count, rtype, where)
    else:
        raise JobspecError(f"{where} must be an integer, a range object or a range/idset string,"
                           f" not {_tn(count)} {_show(count)}")


def count_min(count: Any) -> int:
    """The smallest value a (valid) count allows: the integer itself, a range's ``min``,
    the smallest id of an idset string."""
    if isinstance(count, int):
        return count
    if isinstance(count, Mapping):
        return count["min"]
    if isinstance(count, str):
        try:
            ranges = _idset.decode_ranges(count)
        except ValueError:
            return parse_range_string(count)["min"]
        return ranges[0][0] if ranges else 0
    if hasattr(count, "min"):  # a model CountRange
        return count.min
    raise TypeError(f"not a resource count: {count!r}")


# ---------------------------------------------------------------- resources


def _check_resource(r: Any, where: str, v1: bool, labels: dict[str, str],
                    slot_labels: set[str]) -> None:
    if not isinstance(r, Mapping):
        raise JobspecError(f"{where} must be an object, not {_tn(r)}")
    if "type" not in r:
        raise JobspecError(f"{where} is missing required key 'type'")
    rtype = r["type"]
    if not isinstance(rtype, str) or not rtype:
        raise JobspecError(f"{where}.type must be a non-empty string, not {_tn(rtype)} {_show(rtype)}")
    if v1 and rtype not in V1_RESOURCE_TYPES:
        raise JobspecError(f"{where}: unknown resource type '{rtype}'"
                           " (jobspec V1 allows node, slot, core, gpu)")
    if "count" not in r:
        raise JobspecError(f"{where} ({rtype}) is missing required key 'count'")
    _check_count(r["count"], rtype, f"{where}.count", v1)
    for key in ("label", "unit", "id"):
        if key in r and not isinstance(r[key], str):
            raise JobspecError(f"{where}.{key} must be a string, not {_tn(r[key])} {_show(r[key])}")
    if "exclusive" in r and not isinstance(r["exclusive"], bool):
        raise JobspecError(f"{where}.exclusive must be true or false, not {_show(r['exclusive'])}")
    if rtype == "slot":
        if "label" not in r:
            raise JobspecError(f"{where}: a slot must have a 'label'")
        if not r.get("with"):
            raise JobspecError(f"{where}: a slot must contain resources ('with')")
    if "label" in r:
        label = r["label"]
        if label in labels:
            raise JobspecError(f"{where}: label '{label}' is already used by {labels[label]}")
        labels[label] = where
        if rtype == "slot":
            slot_labels.add(label)
    if v1:
        for key in r:
            if key not in _RESOURCE_KEYS:
                raise JobspecError(f"{where}: unknown key '{key}' (a V1 resource vertex allows"
                                   " type, count, with, label, exclusive, unit, id)")
    if "with" in r:
        children = r["with"]
        if not isinstance(children, list):
            raise JobspecError(f"{where}.with must be an array, not {_tn(children)}")
        for i, child in enumerate(children):
            _check_resource(child, f"{where}.with[{i}]", v1, labels, slot_labels)


def _check_v1_shape(resources: list) -> None:
    """RFC 25: slot>core, slot>(core,gpu), node>slot>core, node>slot>(core,gpu)."""
    shapes = "jobspec V1 allows slot>core, slot>(core,gpu), node>slot>core, node>slot>(core,gpu)"
    if len(resources) != 1:
        raise JobspecError(f"resources must have exactly one top-level vertex in jobspec V1,"
                           f" not {len(resources)}")
    top = resources[0]
    if top["type"] == "node":
        children = top.get("with") or []
        if len(children) != 1 or children[0]["type"] != "slot":
            got = ",".join(c["type"] for c in children) or "nothing"
            raise JobspecError(f"resources[0]: node must contain exactly one slot, not {got} ({shapes})")
        slot, where = children[0], "resources[0].with[0]"
    elif top["type"] == "slot":
        slot, where = top, "resources[0]"
    else:
        raise JobspecError(f"resources[0]: the top-level resource must be node or slot,"
                           f" not {top['type']} ({shapes})")
    inner = slot.get("with") or []
    kinds = [c["type"] for c in inner]
    if kinds.count("core") != 1 or len(inner) > 2 or (len(inner) == 2 and "gpu" not in kinds):
        raise JobspecError(f"{where}: slot must contain one core and at most one gpu,"
                           f" not {','.join(kinds) or 'nothing'} ({shapes})")
    for i, c in enumerate(inner):
        if c.get("with"):
            raise JobspecError(f"{where}.with[{i}]: {c['type']} cannot contain other resources ({shapes})")


# -------------------------------------------------------------------- tasks


def _check_task(t: Any, where: str, v1: bool, slot_labels: set[str]) -> None:
    if not isinstance(t, Mapping):
        raise JobspecError(f"{where} must be an object, not {_tn(t)}")
    for key in ("command", "slot", "count"):
        if key not in t:
            raise JobspecError(f"{where} is missing required key '{key}'")
    cmd = t["command"]
    if not isinstance(cmd, list) or not cmd:
        raise JobspecError(f"{where}.command must be a non-empty array of strings,"
                           f" not {_tn(cmd)} {_show(cmd)}")
    for i, arg in enumerate(cmd):
        if not isinstance(arg, str):
            raise JobspecError(f"{where}.command[{i}] must be a string, not {_tn(arg)} {_show(arg)}")
    slot = t["slot"]
    if not isinstance(slot, str):
        raise JobspecError(f"{where}.slot must be a string, not {_tn(slot)}")
    if slot not in slot_labels:
        known = ", ".join(sorted(slot_labels)) or "none"
        raise JobspecError(f"{where}.slot '{slot}' does not match the label of any slot"
                           f" (slot labels: {known})")
    count = t["count"]
    cw = f"{where}.count"
    if not isinstance(count, Mapping):
        raise JobspecError(f"{cw} must be an object, not {_tn(count)}")
    keys = [k for k in count if k in _TASK_COUNT_KEYS]
    for k in count:
        if k not in _TASK_COUNT_KEYS:
            raise JobspecError(f"{cw}: unknown key '{k}' (allowed: per_slot, per_resource, total)")
    if len(keys) != 1:
        raise JobspecError(f"{cw} must have exactly one of per_slot, per_resource, total")
    kind = keys[0]
    value = count[kind]
    if kind == "per_resource":
        if v1:
            raise JobspecError(f"{cw}: per_resource is not allowed in jobspec V1 (use per_slot or total)")
        if not isinstance(value, Mapping) or set(value) != {"type", "count"}:
            raise JobspecError(f"{cw}.per_resource must be an object with type and count")
        if not isinstance(value["type"], str):
            raise JobspecError(f"{cw}.per_resource.type must be a string")
        if not _is_int(value["count"]) or value["count"] < 1:
            raise JobspecError(f"{cw}.per_resource.count must be an integer >= 1,"
                               f" not {_show(value['count'])}")
    else:
        if not _is_int(value):
            raise JobspecError(f"{cw}.{kind} must be an integer, not {_tn(value)} {_show(value)}")
        if value < 1:
            raise JobspecError(f"{cw}.{kind} must be >= 1, not {value}")
        if v1 and kind == "per_slot" and value != 1:
            raise JobspecError(f"{cw}.per_slot must be 1 in jobspec V1, not {value}")
    if "attributes" in t and not isinstance(t["attributes"], Mapping):
        raise JobspecError(f"{where}.attributes must be an object, not {_tn(t['attributes'])}")
    if "distribution" in t and not isinstance(t["distribution"], str):
        raise JobspecError(f"{where}.distribution must be a string")
    if v1:
        for key in t:
            if key not in _TASK_KEYS:
                raise JobspecError(f"{where}: unknown key '{key}' (a V1 task allows command,"
                                   " slot, count, attributes, distribution)")


# --------------------------------------------------------------- attributes


def _check_constraint(c: Any, where: str) -> None:
    """RFC 31: ``{op: [args]}`` with and/or/not over constraints, properties over names,
    hostlist over hostlists, ranks over idsets."""
    if not isinstance(c, Mapping):
        raise JobspecError(f"{where} must be an object, not {_tn(c)}")
    for op, args in c.items():
        w = f"{where}.{op}"
        if not isinstance(args, list):
            raise JobspecError(f"{w}: the argument of constraint operator '{op}' must be an array")
        if op in ("and", "or", "not"):
            for i, sub in enumerate(args):
                _check_constraint(sub, f"{w}[{i}]")
        elif op == "properties":
            for name in args:
                if not isinstance(name, str) or not name:
                    raise JobspecError(f"{w}: property names must be non-empty strings")
                bad = _CONSTRAINT_BAD_CHARS.intersection(name.lstrip("^"))
                if bad:
                    raise JobspecError(f"{w}: invalid character '{sorted(bad)[0]}' in property '{name}'")
        elif op == "hostlist":
            for hl in args:
                try:
                    _hostlist.decode(hl)
                except (ValueError, AttributeError, TypeError):
                    raise JobspecError(f"{w}: invalid hostlist {_show(hl)}") from None
        elif op == "ranks":
            for ids in args:
                try:
                    _idset.decode_ranges(ids)
                except (ValueError, AttributeError, TypeError):
                    raise JobspecError(f"{w}: invalid idset {_show(ids)}") from None
        else:
            raise JobspecError(f"{where}: unknown constraint operator '{op}'"
                               " (and, or, not, properties, hostlist, ranks)")


def _check_system(system: Mapping, v1: bool) -> None:
    w = "attributes.system"
    if "duration" in system:
        d = system["duration"]
        if not _is_number(d):
            raise JobspecError(f"{w}.duration must be a number of seconds, not {_tn(d)} {_show(d)}")
        if math.isnan(d) or math.isinf(d) or d < 0:
            raise JobspecError(f"{w}.duration must be a finite number >= 0, not {d}")
    elif v1:
        raise JobspecError(f"{w}.duration is required in jobspec V1 (0 means unlimited)")
    if "preemptible-after" in system:
        p = system["preemptible-after"]
        if not _is_number(p) or math.isnan(p) or p < 0:
            raise JobspecError(f"{w}.preemptible-after must be a number >= 0, not {_show(p)}")
    for key in ("cwd", "queue", "bank", "project"):
        if key in system and not isinstance(system[key], str):
            raise JobspecError(f"{w}.{key} must be a string, not {_tn(system[key])} {_show(system[key])}")
    if "environment" in system:
        env = system["environment"]
        if not isinstance(env, Mapping):
            raise JobspecError(f"{w}.environment must be an object, not {_tn(env)}")
        for k, v in env.items():
            if not isinstance(k, str):
                raise JobspecError(f"{w}.environment has a non-string name {_show(k)}")
            if v is not None and not isinstance(v, str):
                raise JobspecError(f"{w}.environment['{k}'] must be a string or null, not {_tn(v)} {_show(v)}")
    if "job" in system:
        job = system["job"]
        if not isinstance(job, Mapping):
            raise JobspecError(f"{w}.job must be an object, not {_tn(job)}")
        for k, v in job.items():
            if not isinstance(v, str):
                raise JobspecError(f"{w}.job.{k} must be a string, not {_tn(v)} {_show(v)}")
    if "shell" in system:
        shell = system["shell"]
        if not isinstance(shell, Mapping):
            raise JobspecError(f"{w}.shell must be an object, not {_tn(shell)}")
        if "options" in shell and not isinstance(shell["options"], Mapping):
            raise JobspecError(f"{w}.shell.options must be an object, not {_tn(shell['options'])}")
    if "dependencies" in system:
        deps = system["dependencies"]
        if not isinstance(deps, list):
            raise JobspecError(f"{w}.dependencies must be an array, not {_tn(deps)}")
        for i, dep in enumerate(deps):
            dw = f"{w}.dependencies[{i}]"
            if not isinstance(dep, Mapping):
                raise JobspecError(f"{dw} must be an object, not {_tn(dep)}")
            for key in ("scheme", "value"):
                if key not in dep:
                    raise JobspecError(f"{dw} is missing required key '{key}'")
                if not isinstance(dep[key], str):
                    raise JobspecError(f"{dw}.{key} must be a string, not {_tn(dep[key])} {_show(dep[key])}")
    if "constraints" in system:
        _check_constraint(system["constraints"], f"{w}.constraints")
    if "files" in system:
        files = system["files"]
        if not isinstance(files, Mapping):
            raise JobspecError(f"{w}.files must be an object (RFC 37 archive), not {_tn(files)}")
        for name, entry in files.items():
            fw = f"{w}.files['{name}']"
            if not isinstance(entry, Mapping):
                raise JobspecError(f"{fw} must be an object, not {_tn(entry)}")
            if "encoding" in entry and entry["encoding"] not in ("utf-8", "base64"):
                raise JobspecError(f"{fw}.encoding must be utf-8 or base64, not {_show(entry['encoding'])}")
            if "mode" in entry and not _is_int(entry["mode"]):
                raise JobspecError(f"{fw}.mode must be an integer")


def _check_attributes(attributes: Any, v1: bool) -> None:
    if not isinstance(attributes, Mapping):
        raise JobspecError(f"attributes must be an object, not {_tn(attributes)}")
    for key in attributes:
        if key not in ("system", "user"):
            raise JobspecError(f"attributes: unknown key '{key}' (allowed: system, user)")
    if "user" in attributes and not isinstance(attributes["user"], Mapping):
        raise JobspecError(f"attributes.user must be an object, not {_tn(attributes['user'])}")
    if "system" in attributes:
        system = attributes["system"]
        if not isinstance(system, Mapping):
            raise JobspecError(f"attributes.system must be an object, not {_tn(system)}")
        _check_system(system, v1)
    elif v1:
        raise JobspecError("attributes.system is required in jobspec V1")


# --------------------------------------------------------------- top level


def validate(js: Any, v1: bool = False) -> None:
    """Raise :class:`JobspecError` unless ``js`` is a valid canonical jobspec (or, with
    ``v1=True``, a valid V1 jobspec)."""
    if not isinstance(js, Mapping):
        raise JobspecError(f"jobspec must be an object, not {_tn(js)}")
    for key in TOP_LEVEL_KEYS:
        if key not in js:
            raise JobspecError(f"jobspec is missing required key '{key}'")
    if len(js) != len(TOP_LEVEL_KEYS):
        for key in js:
            if key not in TOP_LEVEL_KEYS:
                raise JobspecError(f"jobspec has unknown top-level key '{key}'"
                                   " (allowed: resources, tasks, attributes, version)")
    version = js["version"]
    if not _is_int(version):
        raise JobspecError(f"version must be an integer, not {_tn(version)} {_show(version)}")
    if v1 and version != 1:
        raise JobspecError(f"version must be 1 for jobspec V1, not {version}")
    if version < 1:
        raise JobspecError(f"version must be >= 1, not {version}")
    resources = js["resources"]
    if not isinstance(resources, list) or not resources:
        raise JobspecError(f"resources must be a non-empty array, not {_tn(resources)} {_show(resources)}")
    labels: dict[str, str] = {}
    slot_labels: set[str] = set()
    for i, r in enumerate(resources):
        _check_resource(r, f"resources[{i}]", v1, labels, slot_labels)
    if v1:
        _check_v1_shape(resources)
    tasks = js["tasks"]
    if not isinstance(tasks, list) or not tasks:
        raise JobspecError(f"tasks must be a non-empty array, not {_tn(tasks)} {_show(tasks)}")
    if v1 and len(tasks) != 1:
        raise JobspecError(f"tasks must have exactly one entry in jobspec V1, not {len(tasks)}")
    for i, t in enumerate(tasks):
        _check_task(t, f"tasks[{i}]", v1, slot_labels)
    _check_attributes(js["attributes"], v1)


def validate_v1(js: Any) -> None:
    """Shorthand for ``validate(js, v1=True)``."""
    validate(js, v1=True)


# ----------------------------------------------------------------- summaries


def resource_walk(resources: list, parent: Mapping | None = None,
                  count: int = 1) -> Iterator[tuple[Mapping | None, Mapping, int]]:
    """Depth-first, pre-order: ``(parent, vertex, total)`` where ``total`` is the vertex's
    count multiplied by its ancestors' (non-integer counts use their minimum)."""
    for r in resources:
        n = count * count_min(r["count"])
        yield parent, r, n
        children = r.get("with")
        if children:
            yield from resource_walk(children, r, n)


def resource_counts(resources: list) -> dict[str, int]:
    """Total count of each resource type, e.g. ``{"node": 2, "slot": 4, "core": 8}``."""
    totals: dict[str, int] = defaultdict(int)
    for _, r, n in resource_walk(resources):
        totals[r["type"]] += n
    return totals


class SlotCounts(namedtuple("SlotCounts",
                             "nnodes nslots slot_size slot_gpus exclusive duration ntasks")):
    """The shape of a V1 request, as simple schedulers and ``flux jobs`` see it.

    ``nnodes`` (int) is 0 when no node level was requested; ``nslots`` (int) is the total
    number of slots (per node times nodes); ``slot_size``/``slot_gpus`` (int) are per slot;
    ``exclusive`` (bool), ``duration`` (float seconds), ``ntasks`` (int).
    """

    __slots__ = ()

    @property
    def ncores(self) -> int:
        return self.nslots * self.slot_size

    @property
    def ngpus(self) -> int:
        return self.nslots * self.slot_gpus


def slot_counts(js: Mapping) -> SlotCounts:
    """Summarize a V1 jobspec (validated beforehand): nodes, slots, cores and GPUs per slot,
    node exclusivity, duration and the number of tasks."""
    nnodes = nslots = slot_size = slot_gpus = 0
    exclusive = False

    def visit(vertices: list) -> None:
        nonlocal nnodes, nslots, slot_size, slot_gpus, exclusive
        for r in vertices:
            t = r["type"]
            c = count_min(r["count"])
            if t == "node":
                nnodes = c
                exclusive = exclusive or bool(r.get("exclusive"))
            elif t == "slot":
                nslots = c
            elif t == "core":
                slot_size = c
            elif t == "gpu":
                slot_gpus = c
            if r.get("with"):
                visit(r["with"])

    visit(js["resources"])
    if nnodes:
        nslots *= nnodes
    count = js["tasks"][0]["count"]
    if "total" in count:
        ntasks = count["total"]
    else:
        ntasks = nslots * count.get("per_slot", 1)
    duration = js.get("attributes", {}).get("system", {}).get("duration", 0.0)
    return SlotCounts(nnodes=nnodes, nslots=nslots, slot_size=slot_size, slot_gpus=slot_gpus,
                      exclusive=exclusive, duration=float(duration), ntasks=ntasks)


# ------------------------------------------------------------- typed model

_MODEL_NAMES = ("Attributes", "Count", "CountRange", "Dependency", "JobspecModel", "PerResource",
                "Resource", "SystemAttributes", "Task", "TaskCount", "converter")


def __getattr__(name: str) -> Any:
    if name in _MODEL_NAMES:
        from flux.core.job import jobspec_model

        return getattr(jobspec_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def structure(js: Mapping) -> Any:
    """A (valid) jobspec dict as a :class:`~flux.core.job.jobspec_model.JobspecModel`."""
    from flux.core.job.jobspec_model import structure as _structure

    return _structure(js)


def unstructure(model: Any) -> Any:
    """A model object (or list of them) back to plain dicts/lists."""
    from flux.core.job.jobspec_model import unstructure as _unstructure

    return _unstructure(model)
