"""``flux.hostlist``: RFC 29 host lists as flux-core's Python bindings offer them.

:class:`Hostlist` is an ordered list of host names (duplicates kept) that encodes to and
decodes from hostlist strings (``"node[0-3],login1"``); parsing and compression come
from :mod:`flux.core.util.hostlist`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator
from typing import Any

from flux.core.util import hostlist as _codec

__all__ = ["Hostlist", "decode"]


def _expand(text: str) -> list[str]:
    try:
        return _codec.decode(text)
    except ValueError:
        raise ValueError(f"Invalid hostlist: '{text}'") from None


class Hostlist:
    """Hosts from an RFC 29 string (``Hostlist("host[0-10]")``) or an iterable of such
    strings (``Hostlist(["foo1", "foo[3-4]"])``).  Indexing and slicing work as for
    lists; ``str()`` gives the compressed encoding."""

    def __init__(self, arg: Any = "", handle: Any = None):
        if handle is not None:  # flux-core passes a C handle; here: another list
            arg = handle
        if isinstance(arg, Hostlist):
            hosts = list(arg._hosts)
        elif isinstance(arg, str):
            hosts = _expand(arg)
        elif isinstance(arg, Iterable):
            hosts = []
            for item in arg:
                if not isinstance(item, str):
                    raise TypeError(f"Hostlist(): expected string or Iterable, got {type(item)}")
                hosts.extend(_expand(item))
        else:
            raise TypeError(f"Hostlist(): expected string or Iterable, got {type(arg)}")
        self._hosts: list[str] = hosts

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"Hostlist('{self}')"

    def __len__(self) -> int:
        return len(self._hosts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            n = len(self._hosts)
            i = index + n if index < 0 else index
            if 0 <= i < n:
                return self._hosts[i]
            raise IndexError("Hostlist index out of range")
        if isinstance(index, slice):
            return self._hosts[index]
        raise TypeError("Hostlist index must be integer or slice")

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._hosts))

    def __contains__(self, name: object) -> bool:
        return name in self._hosts

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Hostlist):
            return self._hosts == other._hosts
        return NotImplemented

    __hash__ = None  # mutable

    def encode(self) -> str:
        return _codec.encode(self._hosts)

    def count(self) -> int:
        return len(self._hosts)

    def append(self, *args: Any) -> int:
        """Append hosts (Hostlists, strings or iterables); returns how many were added."""
        added = 0
        for arg in args:
            more = arg._hosts if isinstance(arg, Hostlist) else Hostlist(arg)._hosts
            self._hosts.extend(more)
            added += len(more)
        return added

    def delete(self, hosts: Any) -> int:
        """Remove every occurrence of the given hosts; returns how many were removed."""
        gone = set(Hostlist(str(hosts))._hosts)
        before = len(self._hosts)
        self._hosts = [h for h in self._hosts if h not in gone]
        return before - len(self._hosts)

    def find(self, host: str) -> int:
        """Index of the first occurrence of ``host``; FileNotFoundError if absent."""
        try:
            return self._hosts.index(host)
        except ValueError:
            raise FileNotFoundError(f"{host} not found in hostlist") from None

    def index(self, hosts: Any, ignore_nomatch: bool = False) -> list[int]:
        """Indices of ``hosts`` (a hostlist string or Hostlist) in this list."""
        out = []
        for h in Hostlist(hosts) if not isinstance(hosts, Hostlist) else hosts:
            if h in self._hosts:
                out.append(self._hosts.index(h))
            elif not ignore_nomatch:
                raise FileNotFoundError(f"{h} not found in hostlist")
        return out

    def sort(self) -> Hostlist:
        self._hosts.sort(key=_natural_key)
        return self

    def uniq(self) -> Hostlist:
        """Sort, and drop duplicate names."""
        self._hosts = sorted(set(self._hosts), key=_natural_key)
        return self

    def expand(self) -> list[str]:
        return list(self._hosts)

    def copy(self) -> Hostlist:
        return Hostlist(self)


def _natural_key(host: str) -> tuple:
    """Sort ``node2`` before ``node10`` (prefix, then the numeric part)."""
    m = _codec._NUM.match(host)
    if not m:
        return (host, -1, "")
    prefix, num, suffix = m.groups()
    return (prefix, int(num), suffix)


def decode(arg: Any) -> Hostlist:
    """A Hostlist from a string or an iterable of strings."""
    return Hostlist(arg)
