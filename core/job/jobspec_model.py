"""Typed jobspec model: attrs classes with cattrs (un)structuring (RFC 14, RFC 25).

:func:`structure` turns a valid jobspec dict into a :class:`JobspecModel`;
:func:`unstructure` (or ``model.to_dict()``) gives back an equal dict.  JSON keys that
are not Python names map to fields through ``metadata={"key": ...}`` (``with`` ->
``with_``, ``preemptible-after`` -> ``preemptible_after``); unknown keys are kept in each
class's ``extra`` dict, so nothing is lost on a round trip.

Kept apart from :mod:`flux.core.job.jobspec` because defining the classes costs tens of
milliseconds, which command-line tools that only validate should not pay.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from flux.core.job.jobspec import count_min, parse_range_string, validate


def _key(name: str) -> dict:
    return {"key": name}


@attrs.define
class CountRange:
    """A count range (RFC 14): ``min``, optional ``max`` (unbounded if None), and an
    ``operator`` (``+``, ``*``, ``^``) with its ``operand`` that steps from one
    acceptable value to the next."""

    min: int
    max: int | None = None
    operator: str | None = None
    operand: int | None = None

    @classmethod
    def from_string(cls, text: str) -> CountRange:
        """From an RFC 45 range string such as ``1-5:2:*`` or ``8+``."""
        return cls(**parse_range_string(text))

    def to_string(self) -> str:
        head = f"{self.min}-{self.max}" if self.max is not None else f"{self.min}+"
        if self.operand is None:
            return head
        return f"{head}:{self.operand}:{self.operator or '+'}"

    def values(self, limit: int) -> Iterator[int]:
        """Acceptable values in increasing order, up to ``min(max, limit)``."""
        top = limit if self.max is None else min(self.max, limit)
        op, k = self.operator or "+", self.operand or 1
        v = self.min
        while v <= top:
            yield v
            v = v + k if op == "+" else v * k if op == "*" else v ** k
            if op == "^" and v <= 1:  # pragma: no cover - guarded by validation
                break


Count = int | CountRange | str


@attrs.define
class Resource:
    """A resource vertex.  ``with_`` is the JSON key ``with``; unknown keys (allowed in
    canonical jobspec) are kept in ``extra``."""

    type: str
    count: Count
    with_: list[Resource] | None = attrs.field(default=None, metadata=_key("with"))
    label: str | None = None
    exclusive: bool | None = None
    unit: str | None = None
    id: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def min_count(self) -> int:
        return count_min(self.count)

    def walk(self) -> Iterator[Resource]:
        """This vertex and all below it, depth first."""
        yield self
        for child in self.with_ or ():
            yield from child.walk()


@attrs.define
class PerResource:
    type: str
    count: int


@attrs.define
class TaskCount:
    """Exactly one of ``per_slot``, ``total`` or ``per_resource`` is set."""

    per_slot: int | None = None
    total: int | None = None
    per_resource: PerResource | None = None


@attrs.define
class Task:
    command: list[str]
    slot: str
    count: TaskCount
    attributes: dict[str, Any] | None = None
    distribution: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class Dependency:
    """RFC 26: ``{scheme, value, ...}``; other keys are kept in ``extra``."""

    scheme: str
    value: str
    extra: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class SystemAttributes:
    """``attributes.system``: the keys in use (SPEC 2.4) typed; any other key in ``extra``."""

    duration: float | None = None
    cwd: str | None = None
    environment: dict[str, str | None] | None = None
    queue: str | None = None
    bank: str | None = None
    project: str | None = None
    job: dict[str, str] | None = None
    shell: dict[str, Any] | None = None
    dependencies: list[Dependency] | None = None
    constraints: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    preemptible_after: float | None = attrs.field(default=None, metadata=_key("preemptible-after"))
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def shell_options(self) -> dict[str, Any]:
        return (self.shell or {}).get("options", {})

    @property
    def job_name(self) -> str | None:
        return (self.job or {}).get("name")


@attrs.define
class Attributes:
    system: SystemAttributes | None = None
    user: dict[str, Any] | None = None


@attrs.define
class JobspecModel:
    """A whole jobspec, typed.  Build it with :meth:`from_dict`; :meth:`to_dict` gives
    back an equal dict."""

    resources: list[Resource]
    tasks: list[Task]
    attributes: Attributes
    version: int = 1

    @classmethod
    def from_dict(cls, js: Mapping, validate_first: bool = True, v1: bool = False) -> JobspecModel:
        if validate_first:
            validate(js, v1=v1)
        return structure(js)

    def to_dict(self) -> dict:
        return unstructure(self)

    def walk(self) -> Iterator[Resource]:
        for r in self.resources:
            yield from r.walk()


_converter = None


def _make_converter():
    import typing

    import cattrs

    conv = cattrs.Converter()
    model_classes = (CountRange, Resource, PerResource, TaskCount, Task, Dependency,
                     SystemAttributes, Attributes, JobspecModel)
    for cls in model_classes:
        attrs.resolve_types(cls, globals())

    def mentions_model(tp) -> bool:
        if tp in model_classes:
            return True
        return any(mentions_model(a) for a in typing.get_args(tp))

    def passthrough(v):
        if isinstance(v, Mapping):
            return dict(v)
        if isinstance(v, list):
            return list(v)
        return v

    def flat_hooks(cls):
        fields = [f for f in attrs.fields(cls) if f.name != "extra"]
        keys = {f.name: f.metadata.get("key", f.name) for f in fields}
        typed = {f.name: mentions_model(f.type) for f in fields}
        has_extra = any(f.name == "extra" for f in attrs.fields(cls))
        known = set(keys.values())

        def structure_hook(d, _):
            kw = {}
            for f in fields:
                k = keys[f.name]
                if k in d:
                    v = d[k]
                    if v is not None and typed[f.name]:
                        kw[f.name] = conv.structure(v, f.type)
                    else:
                        kw[f.name] = passthrough(v)
            if has_extra:
                kw["extra"] = {k: v for k, v in d.items() if k not in known}
            return cls(**kw)

        def unstructure_hook(obj):
            out = {}
            for f in fields:
                v = getattr(obj, f.name)
                if v is not None:
                    out[keys[f.name]] = conv.unstructure(v) if typed[f.name] else v
            if has_extra:
                out.update(obj.extra)
            return out

        return structure_hook, unstructure_hook

    for cls in model_classes:
        s, u = flat_hooks(cls)
        conv.register_structure_hook(cls, s)
        conv.register_unstructure_hook(cls, u)

    def structure_count(v, _):
        if isinstance(v, Mapping):
            return conv.structure(v, CountRange)
        return v

    conv.register_structure_hook(Count, structure_count)
    return conv


def converter():
    """The cattrs converter for the model classes (created on first use)."""
    global _converter
    if _converter is None:
        _converter = _make_converter()
    return _converter


def structure(js: Mapping) -> JobspecModel:
    """A (valid) jobspec dict as a :class:`JobspecModel`."""
    return converter().structure(js, JobspecModel)


def unstructure(model: Any) -> Any:
    """A model object (or list of them) back to plain dicts/lists."""
    return converter().unstructure(model)
