"""``flux.idset``: RFC 22 id sets as flux-core's Python bindings offer them.

:class:`IDset` is a mutable set of non-negative integers that encodes to and decodes from
idset strings (``"0-3,7"``); parsing and canonical encoding come from
:mod:`flux.core.util.idset`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator
from typing import Any

from flux.core.util import idset as _codec

__all__ = ["IDSET_FLAG_BRACKETS", "IDSET_FLAG_RANGE", "IDSET_INVALID_ID", "IDset", "decode"]

# flag values and the "no such id" marker of libflux-idset
IDSET_FLAG_BRACKETS = 2
IDSET_FLAG_RANGE = 4
IDSET_INVALID_ID = 0xFFFFFFFF - 1


class IDset:
    """A set of non-negative integers, built from an RFC 22 string (``"0-3,5"``),
    an int, another IDset, or any iterable of ints.

    Encoding uses ``flags`` (default: ranges collapsed); ``str()`` gives the encoding.
    Set operators: ``+``/``|`` (union), ``-`` (difference), ``&`` (intersection).
    """

    def __init__(self, arg: Any = "", flags: int = IDSET_FLAG_RANGE, handle: Any = None):
        self.default_flags = flags
        if handle is not None:  # flux-core passes a C handle; here: another id set
            arg = handle
        if isinstance(arg, IDset):
            ids = set(arg._ids)
        elif isinstance(arg, str):
            try:
                ids = set(_codec.decode(arg))
            except ValueError:
                raise ValueError(f"IDset(): Invalid argument: {arg}") from None
        elif isinstance(arg, bool):
            raise TypeError(f"IDset() expected an idset string or iterable, got {type(arg)}")
        elif isinstance(arg, numbers.Integral):
            ids = {self._check_index(arg, "IDset")}
        elif isinstance(arg, Iterable):
            ids = {self._check_index(i, "IDset") for i in arg}
        else:
            raise TypeError(f"IDset() expected an idset string or iterable, got {type(arg)}")
        self._ids: set[int] = ids

    @staticmethod
    def _check_index(i: Any, name: str) -> int:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"IDset.{name} supports integers, not {type(i)}")
        if i < 0:
            raise ValueError(f"negative index passed to IDset.{name}")
        return int(i)

    @staticmethod
    def _coerce(arg: Any) -> IDset:
        return arg if isinstance(arg, IDset) else IDset(arg)

    # ----------------------------------------------------------- protocol
    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"IDset('{self.encode(flags=IDSET_FLAG_RANGE)}')"

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._ids))

    def __contains__(self, i: Any) -> bool:
        return self.test(i)

    def __getitem__(self, i: int) -> bool:
        return self.test(i)

    def __setitem__(self, i: int, value: Any) -> None:
        if value in (0, 1):
            value = bool(value)
        if not isinstance(value, bool):
            raise TypeError(f"IDset setitem must be bool or 0,1 not {type(value)}")
        if value:
            self.set(i)
        else:
            self.clear(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IDset):
            return self._ids == other._ids
        return NotImplemented

    __hash__ = None  # mutable

    def __add__(self, arg: Any) -> IDset:
        return self.union(arg)

    def __or__(self, arg: Any) -> IDset:
        return self.union(arg)

    def __sub__(self, arg: Any) -> IDset:
        return self.difference(arg)

    def __and__(self, arg: Any) -> IDset:
        return self.intersect(arg)

    def __iadd__(self, arg: Any) -> IDset:
        return self.add(arg)

    def __isub__(self, arg: Any) -> IDset:
        return self.subtract(arg)

    # ------------------------------------------------------------ methods
    def equal(self, other: IDset) -> bool:
        if not isinstance(other, IDset):
            raise TypeError("IDset.equal() takes an IDset")
        return self._ids == other._ids

    def set_flags(self, flags: int) -> None:
        """Default encoding flags: IDSET_FLAG_RANGE and/or IDSET_FLAG_BRACKETS."""
        self.default_flags = flags

    def test(self, i: Any) -> bool:
        return self._check_index(i, "test") in self._ids

    def set(self, start: int, end: int | None = None) -> IDset:
        """Add ``start`` (or the range ``start..end``); returns self."""
        start = self._check_index(start, "set")
        if end is None:
            self._ids.add(start)
        else:
            end = self._check_index(end, "set")
            if end < start:
                raise ValueError(f"can't set range with {start} > {end}")
            self._ids.update(range(start, end + 1))
        return self

    def clear(self, start: int, end: int | None = None) -> IDset:
        """Remove ``start`` (or the range ``start..end``); returns self."""
        start = self._check_index(start, "clear")
        if end is None:
            self._ids.discard(start)
        else:
            end = self._check_index(end, "clear")
            if end < start:
                raise ValueError(f"can't clear range with {start} > {end}")
            self._ids.difference_update(range(start, end + 1))
        return self

    def expand(self) -> list[int]:
        return sorted(self._ids)

    def count(self) -> int:
        return len(self._ids)

    def copy(self) -> IDset:
        return IDset(self, flags=self.default_flags)

    def encode(self, flags: int | None = None) -> str:
        if flags is None:
            flags = self.default_flags
        brackets = bool(flags & IDSET_FLAG_BRACKETS)
        if flags & IDSET_FLAG_RANGE:
            return _codec.encode(self._ids, brackets=brackets)
        text = ",".join(str(i) for i in sorted(self._ids))
        return f"[{text}]" if brackets and len(self._ids) > 1 else text

    def first(self) -> int:
        return min(self._ids) if self._ids else IDSET_INVALID_ID

    def last(self) -> int:
        return max(self._ids) if self._ids else IDSET_INVALID_ID

    def next(self, i: int) -> int:
        i = self._check_index(i, "next")
        later = [x for x in self._ids if x > i]
        return min(later) if later else IDSET_INVALID_ID

    def add(self, arg: Any) -> IDset:
        self._ids |= self._coerce(arg)._ids
        return self

    def subtract(self, arg: Any) -> IDset:
        self._ids -= self._coerce(arg)._ids
        return self

    def union(self, *args: Any) -> IDset:
        out = self.copy()
        for a in args:
            out._ids |= self._coerce(a)._ids
        return out

    def intersect(self, *args: Any) -> IDset:
        out = self.copy()
        for a in args:
            out._ids &= self._coerce(a)._ids
        return out

    def difference(self, *args: Any) -> IDset:
        out = self.copy()
        for a in args:
            out._ids -= self._coerce(a)._ids
        return out


def decode(string: str) -> IDset:
    """An IDset from an RFC 22 string."""
    return IDset(string)
