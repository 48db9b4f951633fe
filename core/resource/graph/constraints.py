"""RFC 31 constraints, compiled to a predicate on node vertices.

`{"properties": ["a", "^b"]}` (has a, lacks b), `{"hostlist": ["n[1-4]"]}`,
`{"ranks": ["0-3"]}`, and `and`/`or`/`not` over lists of constraints. `{}` and an
empty and/or match every node; an empty not matches none (SPEC 7.7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flux.core.util import hostlist as _hostlist
from flux.core.util import idset as _idset

_BAD = frozenset("!&'\"^`|()")


class Constraint:
    __slots__ = ("spec", "_pred")

    def __init__(self, spec: Any, pred: Callable[[Any], bool]):
        self.spec = spec
        self._pred = pred

    def __call__(self, node: Any) -> bool:
        return self._pred(node)

    @classmethod
    def compile(cls, spec: Any) -> Constraint:
        return cls(spec, _compile(spec, "constraints"))

    def __repr__(self) -> str:
        return f"Constraint({self.spec!r})"


def _compile(c: Any, where: str) -> Callable[[Any], bool]:
    if not isinstance(c, Mapping):
        raise ValueError(f"{where} must be an object, not {type(c).__name__}")
    preds = []
    for op, args in c.items():
        w = f"{where}.{op}"
        if not isinstance(args, list):
            raise ValueError(f"{w}: the argument of constraint operator '{op}' must be an array")
        if op in ("and", "or", "not"):
            subs = [_compile(a, f"{w}[{i}]") for i, a in enumerate(args)]
            if op == "and":
                preds.append(lambda v, s=subs: all(p(v) for p in s))
            elif op == "or":
                preds.append((lambda v, s=subs: any(p(v) for p in s)) if subs else (lambda v: True))
            else:  # not: true when the conjunction of its arguments is false
                preds.append(lambda v, s=subs: not (s and all(p(v) for p in s)))
        elif op == "properties":
            want, lack = [], []
            for name in args:
                if not isinstance(name, str) or not name or name == "^":
                    raise ValueError(f"{w}: property names must be non-empty strings")
                bad = _BAD.intersection(name[1:] if name.startswith("^") else name)
                if bad:
                    raise ValueError(f"{w}: invalid character '{sorted(bad)[0]}' in property '{name}'")
                (lack if name.startswith("^") else want).append(name.lstrip("^"))
            preds.append(lambda v, a=tuple(want), b=tuple(lack):
                         all(p in v.properties for p in a) and not any(p in v.properties for p in b))
        elif op == "hostlist":
            hosts: set[str] = set()
            for hl in args:
                try:
                    hosts.update(_hostlist.decode(hl))
                except (ValueError, AttributeError, TypeError):
                    raise ValueError(f"{w}: invalid hostlist {hl!r}") from None
            preds.append(lambda v, h=frozenset(hosts): v.name in h)
        elif op == "ranks":
            ranges = []
            for ids in args:
                try:
                    ranges.extend(_idset.decode_ranges(ids))
                except (ValueError, AttributeError, TypeError):
                    raise ValueError(f"{w}: invalid idset {ids!r}") from None
            preds.append(lambda v, r=tuple(ranges): any(lo <= v.rank <= hi for lo, hi in r))
        else:
            raise ValueError(f"{where}: unknown constraint operator '{op}'"
                             " (and, or, not, properties, hostlist, ranks)")
    if not preds:
        return lambda v: True
    if len(preds) == 1:
        return preds[0]
    return lambda v: all(p(v) for p in preds)
