"""``flux.resource.ResourceSet``: an RFC 20 resource set (R version 1) with the
interface of flux-core's Python bindings.

The set algebra and R parsing are :class:`flux.core.resource.rv1.ResourceSet`'s; this
class adds flux-core's names: ``ranks`` (an IDset), ``nodelist`` (a Hostlist),
``dumps()``/``encode()``, ``count()``, ``copy_ranks()``, ``host_ranks()``, operators
``|``, ``-``, ``&`` and an optional ``state`` label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flux.core.resource.rv1 import Rank, RError
from flux.core.resource.rv1 import ResourceSet as _Rv1
from flux.hostlist import Hostlist
from flux.idset import IDset

__all__ = ["ResourceSet"]


def _drop_empty(impl: _Rv1) -> _Rv1:
    """Ranks left with no cores and no GPUs are no longer part of the set."""
    keep = [r for r, rk in impl.ranks.items() if rk.cores or rk.gpus]
    return impl if len(keep) == len(impl.ranks) else impl.select_ranks(keep)


class ResourceSet:
    """R version 1: from its JSON text, a decoded mapping, or nothing (empty set).

    Raises TypeError for another kind of argument, ValueError for an invalid R or an
    unsupported version, KeyError for a mapping without ``version``.
    """

    def __init__(self, arg: Any = None, version: int = 1):
        self._state: str | None = None
        if isinstance(arg, _Rv1):
            self.impl, self.version = arg, 1
            return
        if isinstance(arg, ResourceSet):
            self.impl, self.version = arg.impl.copy(), arg.version
            return
        if isinstance(arg, (str, bytes)):
            arg = json.loads(arg)
        if isinstance(arg, Mapping):
            version = arg["version"]
        elif arg is not None:
            raise TypeError(f"ResourceSet cannot be instantiated from {type(arg)}")
        if version != 1:
            raise ValueError(f"R version {version} not supported")
        self.version = 1
        try:
            self.impl = _Rv1.from_dict(dict(arg)) if arg is not None else _Rv1()
        except RError as exc:
            raise ValueError(str(exc)) from None

    @staticmethod
    def _coerce(arg: Any) -> ResourceSet:
        return arg if isinstance(arg, ResourceSet) else ResourceSet(arg)

    # ----------------------------------------------------------- encodings
    def __str__(self) -> str:
        return self.dumps()

    def __repr__(self) -> str:
        return f"ResourceSet('{self.dumps()}')"

    def dumps(self) -> str:
        """Short human-readable form, e.g. ``rank[0-1]/core[0-3]``."""
        return self.impl.rlist()

    def encode(self) -> str:
        """The R JSON text."""
        return json.dumps(self.impl.to_dict(), separators=(",", ":"))

    def to_dict(self) -> dict:
        return self.impl.to_dict()

    # ------------------------------------------------------------ algebra
    def __and__(self, arg: Any) -> ResourceSet:
        return self.intersect(arg)

    def __sub__(self, arg: Any) -> ResourceSet:
        return self.diff(arg)

    def __or__(self, arg: Any) -> ResourceSet:
        return self.union(arg)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceSet):
            return NotImplemented
        return self.impl.to_dict() == other.impl.to_dict()

    __hash__ = None  # mutable

    def copy(self) -> ResourceSet:
        return ResourceSet(self.impl.copy())

    def union(self, *args: Any) -> ResourceSet:
        return self.copy().add(*args)

    def diff(self, *args: Any) -> ResourceSet:
        impl = self.impl.copy()
        for a in args:
            impl = _drop_empty(impl.subtract(self._coerce(a).impl))
        return ResourceSet(impl)

    def intersect(self, *args: Any) -> ResourceSet:
        impl = self.impl.copy()
        for a in args:
            other = self._coerce(a).impl
            ranks = {}
            for r, rk in impl.ranks.items():
                o = other.ranks.get(r)
                if o is not None:
                    ranks[r] = Rank(r, rk.host or o.host, rk.cores & o.cores, rk.gpus & o.gpus)
            impl = _drop_empty(_Rv1(ranks, {k: v & set(ranks) for k, v in impl.properties.items()},
                                    impl.starttime, impl.expiration))
        return ResourceSet(impl)

    def append(self, *args: Any) -> ResourceSet:
        """Add other sets to this one in place; their ranks must not overlap ours."""
        for a in args:
            other = self._coerce(a).impl
            common = set(other.ranks) & set(self.impl.ranks)
            if common:
                raise ValueError(f"ResourceSet.append: ranks {IDset(common)} are already present")
        return self.add(*args)

    def add(self, *args: Any) -> ResourceSet:
        """Union in place (overlapping ranks are merged, and so are properties)."""
        for a in args:
            other = self._coerce(a).impl
            props = {k: set(v) for k, v in self.impl.properties.items()}
            for k, v in other.properties.items():
                props.setdefault(k, set()).update(v)
            self.impl = self.impl.union(other)
            self.impl.properties = props
        return self

    def copy_ranks(self, ranks: Any) -> ResourceSet:
        """A copy holding only ``ranks`` (an IDset, idset string, int or iterable)."""
        return ResourceSet(self.impl.select_ranks(IDset(ranks) if not isinstance(ranks, IDset)
                                                  else ranks))

    def remove_ranks(self, ranks: Any) -> ResourceSet:
        gone = set(ranks if isinstance(ranks, IDset) else IDset(str(ranks)))
        self.impl = self.impl.select_ranks(set(self.impl.ranks) - gone)
        return self

    def host_ranks(self, hosts: Any, ignore_nomatch: bool = False) -> list[int]:
        """Ranks of the given hosts (a hostlist string or Hostlist), in their order."""
        by_host: dict[str, list[int]] = {}
        for r in sorted(self.impl.ranks):
            by_host.setdefault(self.impl.ranks[r].host, []).append(r)
        out: list[int] = []
        for h in hosts if isinstance(hosts, Hostlist) else Hostlist(hosts):
            if h in by_host:
                out.extend(by_host[h])
            elif not ignore_nomatch:
                raise FileNotFoundError(f"host {h} is not in this resource set")
        return out

    def set_property(self, name: str, ranks: Any = None) -> ResourceSet:
        """Give ``ranks`` (default: all) the property ``name``."""
        if any(c in name for c in "!&'\"^`|()"):
            raise ValueError(f"invalid property name '{name}'")
        ids = set(self.ranks if ranks is None else IDset(ranks))
        missing = ids - set(self.impl.ranks)
        if missing:
            raise ValueError(f"ranks {IDset(missing)} are not in this resource set")
        self.impl.properties.setdefault(name, set()).update(ids)
        return self

    def get_properties(self) -> str:
        """The properties as JSON ``{name: idset}``."""
        return json.dumps({k: str(IDset(v)) for k, v in self.impl.properties.items() if v})

    def count(self, name: str) -> int:
        """How many resources of a type (``core``, ``gpu``, ``node``) the set holds."""
        if name == "core":
            return self.impl.ncores
        if name == "gpu":
            return self.impl.ngpus
        if name in ("node", "rank"):
            return self.impl.nnodes
        return 0

    # ---------------------------------------------------------- attributes
    @property
    def state(self) -> str | None:
        """An optional label such as ``up`` or ``free``."""
        return self._state

    @state.setter
    def state(self, value: str | None) -> None:
        self._state = value

    @property
    def nodelist(self) -> Hostlist:
        return Hostlist(self.impl.nodelist())

    @property
    def ranks(self) -> IDset:
        return IDset(self.impl.ranks.keys())

    @property
    def nnodes(self) -> int:
        return self.impl.nnodes

    @property
    def ncores(self) -> int:
        return self.impl.ncores

    @property
    def ngpus(self) -> int:
        return self.impl.ngpus

    @property
    def rlist(self) -> str:
        return self.impl.rlist()

    @property
    def properties(self) -> str:
        """Property names held by any rank, comma separated."""
        return ",".join(sorted(k for k, v in self.impl.properties.items() if v))

    @property
    def starttime(self) -> float:
        return self.impl.starttime

    @property
    def expiration(self) -> float:
        return self.impl.expiration
