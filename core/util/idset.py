"""RFC 22 idsets: `1-3,5,42` <-> sets of non-negative integers."""

from __future__ import annotations

from collections.abc import Iterable


def decode(text: str) -> list[int]:
    """Sorted unique ids from an idset string; ValueError names the bad part."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    out: set[int] = set()
    if not s:
        return []
    for part in s.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"invalid idset '{text}': empty element")
        if "-" in part:
            a, _, b = part.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"invalid idset '{text}': bad range '{part}'")
            lo, hi = int(a), int(b)
            if hi < lo:
                raise ValueError(f"invalid idset '{text}': range '{part}' is backwards")
            out.update(range(lo, hi + 1))
        else:
            if not part.isdigit():
                raise ValueError(f"invalid idset '{text}': '{part}' is not a non-negative integer")
            out.add(int(part))
    return sorted(out)


def encode(ids: Iterable[int], brackets: bool = False) -> str:
    """Compact idset string (ranges collapsed)."""
    items = sorted(set(ids))
    parts = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    s = ",".join(parts)
    if brackets and (len(items) > 1):
        return f"[{s}]"
    return s
