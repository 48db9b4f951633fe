"""RFC 29 hostlists: `foo[0-4]-eth2,bar` <-> ordered lists of host names."""

from __future__ import annotations

import re


def _digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


_BRACKET = re.compile(r"^(?P<prefix>[^\[\]]*)\[(?P<ids>[^\[\]]*)\](?P<suffix>[^\[\],]*)$")


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"invalid hostlist '{text}': unbalanced ']'")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"invalid hostlist '{text}': unbalanced '['")
    parts.append("".join(cur))
    return parts


def decode(text: str) -> list[str]:
    """Expand a hostlist in order, keeping duplicates."""
    text = text.strip()
    if not text:
        return []
    out: list[str] = []
    for part in _split_top(text):
        part = part.strip()
        if not part:
            raise ValueError(f"invalid hostlist '{text}': empty host")
        m = _BRACKET.match(part)
        if not m:
            if "[" in part or "]" in part:
                raise ValueError(f"invalid hostlist '{text}': bad brackets in '{part}'")
            out.append(part)
            continue
        prefix, ids, suffix = m.group("prefix"), m.group("ids"), m.group("suffix")
        for rng in ids.split(","):
            rng = rng.strip()
            if "-" in rng:
                a, _, b = rng.partition("-")
                a, b = a.strip(), b.strip()
                if not (_digits(a) and _digits(b)) or int(b) < int(a):
                    raise ValueError(f"invalid hostlist '{text}': bad range '{rng}'")
                width = len(a) if a.startswith("0") and len(a) > 1 else 0
                for i in range(int(a), int(b) + 1):
                    out.append(f"{prefix}{i:0{width}d}{suffix}")
            else:
                if not _digits(rng):
                    raise ValueError(f"invalid hostlist '{text}': '{rng}' is not a number")
                out.append(f"{prefix}{rng}{suffix}")
    return out


_NUM = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$")


def _padded(num: str) -> bool:
    return len(num) > 1 and num[0] == "0"


def _same_width(first: str, other: str) -> bool:
    """Can ``other`` join a range that starts at ``first``?  A range is printed with the
    width of its first id (RFC 29), so padded ids must keep that width, and unpadded
    ids must stay unpadded."""
    if _padded(first):
        return len(other) == len(first)
    return not _padded(other)


def encode(hosts: list[str]) -> str:
    """Compress a host list, keeping its order (adjacent runs of one prefix are merged)."""
    groups: list[tuple[str, str, list[str]]] = []
    for h in hosts:
        m = _NUM.match(h)
        if not m:
            groups.append((h, "", []))
            continue
        prefix, num, suffix = m.groups()
        if groups and groups[-1][0] == prefix and groups[-1][1] == suffix and groups[-1][2]:
            groups[-1][2].append(num)
        else:
            groups.append((prefix, suffix, [num]))
    out = []
    for prefix, suffix, nums in groups:
        if not nums:
            out.append(prefix)
            continue
        if len(nums) == 1:
            out.append(f"{prefix}{nums[0]}{suffix}")
            continue
        ranges, i = [], 0
        while i < len(nums):
            j = i
            while (j + 1 < len(nums) and int(nums[j + 1]) == int(nums[j]) + 1
                   and _same_width(nums[i], nums[j + 1])):
                j += 1
            ranges.append(nums[i] if i == j else f"{nums[i]}-{nums[j]}")
            i = j + 1
        out.append(f"{prefix}[{','.join(ranges)}]{suffix}")
    return ",".join(out)
