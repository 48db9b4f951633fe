"""RFC 22 idsets: `1-3,5,42` <-> sets of non-negative integers.

Decoding is lenient the way flux-core's is (ids in any order, duplicates, optional
surrounding brackets); encoding is canonical (ascending, ranges collapsed).
:func:`decode_ranges` never expands ranges, so huge sets such as ``0-4294967295`` are cheap.
"""

from __future__ import annotations

from collections.abc import Iterable


def _int(text: str, part: str, whole: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"invalid idset '{whole}': '{part}' is not a non-negative integer")
    return int(text)


def decode_ranges(text: str) -> list[tuple[int, int]]:
    """Sorted, merged, inclusive ``(lo, hi)`` ranges of an idset string."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1].strip()
    if not s:
        return []
    ranges: list[tuple[int, int]] = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"invalid idset '{text}': empty element")
        if "-" in part:
            a, _, b = part.partition("-")
            a, b = a.strip(), b.strip()
            if not a or not b:
                raise ValueError(f"invalid idset '{text}': bad range '{part}'")
            lo, hi = _int(a, part, text), _int(b, part, text)
            if hi < lo:
                raise ValueError(f"invalid idset '{text}': range '{part}' is backwards")
        else:
            lo = hi = _int(part, part, text)
        ranges.append((lo, hi))
    ranges.sort()
    merged = [ranges[0]]
    for lo, hi in ranges[1:]:
        plo, phi = merged[-1]
        if lo <= phi + 1:
            if hi > phi:
                merged[-1] = (plo, hi)
        else:
            merged.append((lo, hi))
    return merged


def decode(text: str) -> list[int]:
    """Sorted unique ids from an idset string; ValueError names the bad part."""
    out: list[int] = []
    for lo, hi in decode_ranges(text):
        out.extend(range(lo, hi + 1))
    return out


def count(text: str) -> int:
    """Number of ids in an idset string, without expanding it."""
    return sum(hi - lo + 1 for lo, hi in decode_ranges(text))


def contains(text: str, value: int) -> bool:
    """True if ``value`` is in the idset string (no expansion)."""
    return any(lo <= value <= hi for lo, hi in decode_ranges(text))


def encode(ids: Iterable[int], brackets: bool = False) -> str:
    """Compact idset string (ranges collapsed).  With ``brackets``, sets of more than one
    id are wrapped in ``[...]``."""
    items = sorted(set(ids))
    if items and items[0] < 0:
        raise ValueError(f"idset members must be non-negative, got {items[0]}")
    parts = []
    i = 0
    n = len(items)
    while i < n:
        j = i
        while j + 1 < n and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    s = ",".join(parts)
    if brackets and n > 1:
        return f"[{s}]"
    return s
