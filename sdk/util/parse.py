"""Parsing helpers shared by commands: durations, datetimes, dotted dictionary paths."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flux.core.util.fsd import parse_fsd as _core_parse_fsd

__all__ = ["del_treedict", "get_treedict", "parse_datetime", "parse_fsd", "set_treedict"]


def parse_fsd(fsd_string: str) -> float:
    """Seconds in a Flux Standard Duration (RFC 23) string; `inf`/`infinity` give math.inf.

    Raises ValueError("invalid Flux standard duration") like flux-core."""
    try:
        return _core_parse_fsd(fsd_string)
    except ValueError:
        raise ValueError("invalid Flux standard duration") from None


_CLOCK = re.compile(r"^(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*([ap]m)?$", re.I)


def _clock(text: str) -> tuple[int, int, int] | None:
    m = _CLOCK.match(text.strip())
    if not m:
        return None
    h, mi, s = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    if m[4]:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if m[4].lower() == "pm" else 0)
    elif m[2] is None:
        return None  # a bare number is not a time of day
    if h > 23 or mi > 59 or s > 59:
        return None
    return h, mi, s


def parse_datetime(string: str, now: datetime | None = None) -> datetime:
    """A datetime from `now`, `+FSD`/`-FSD` (offset from now), an epoch number, an ISO
    8601 date/time (`2024-06-21`, `2024-06-21 6:00`, `2024-06-21T06:00:00`), `today`,
    `yesterday`, `tomorrow` (each optionally followed by a time) or a time of day
    (`6am`, `18:30`). Raises ValueError naming the input."""
    if now is None:
        now = datetime.now().astimezone()
    text = string.strip()
    if text == "now":
        return now
    if text.startswith(("+", "-")):
        secs = parse_fsd(text[1:])
        if math.isinf(secs):
            raise ValueError(f'Invalid datetime: "{string}"')
        delta = timedelta(seconds=secs)
        return (now + delta) if text[0] == "+" else (now - delta)
    try:
        return datetime.fromtimestamp(float(text)).astimezone()
    except (ValueError, OverflowError, OSError):
        pass
    words = text.lower().split(None, 1)
    base = {"today": 0, "yesterday": -1, "tomorrow": 1}
    if words and words[0] in base:
        day = (now + timedelta(days=base[words[0]])).replace(hour=0, minute=0, second=0,
                                                               microsecond=0)
        if len(words) == 1:
            return day
        hms = _clock(words[1])
        if hms is None:
            raise ValueError(f'Invalid datetime: "{string}"')
        return day.replace(hour=hms[0], minute=hms[1], second=hms[2])
    hms = _clock(text)
    if hms is not None:
        return now.replace(hour=hms[0], minute=hms[1], second=hms[2], microsecond=0)
    date, _, rest = text.replace("T", " ", 1).partition(" ")
    try:
        day = datetime.fromisoformat(date)
    except ValueError:
        raise ValueError(f'Invalid datetime: "{string}"') from None
    if rest:
        hms = _clock(rest)
        if hms is None:
            try:
                return datetime.fromisoformat(text).astimezone()
            except ValueError:
                raise ValueError(f'Invalid datetime: "{string}"') from None
        day = day.replace(hour=hms[0], minute=hms[1], second=hms[2])
    return day.astimezone()


def get_treedict(in_dict: Mapping, key: str, default: Any = None) -> Any:
    """``get_treedict(d, "a.b.c")`` is ``d["a"]["b"]["c"]``, or default if any is missing."""
    d: Any = in_dict
    for part in key.split("."):
        if not isinstance(d, Mapping) or part not in d:
            return default
        d = d[part]
    return d


def set_treedict(in_dict: dict, key: str, val: Any) -> None:
    """``set_treedict(d, "a.b.c", 42)`` sets ``d["a"]["b"]["c"] = 42``, creating levels."""
    parts = key.split(".")
    for part in parts[:-1]:
        in_dict = in_dict.setdefault(part, {})
    in_dict[parts[-1]] = val


def del_treedict(in_dict: dict, key: str, remove_empty: bool = False) -> None:
    """``del d["a"]["b"]["c"]`` for ``"a.b.c"``; KeyError if a level is missing. With
    remove_empty, levels left empty are removed too."""
    head, _, rest = key.partition(".")
    if not rest:
        del in_dict[head]
        return
    del_treedict(in_dict[head], rest, remove_empty)
    if remove_empty and isinstance(in_dict[head], Mapping) and not in_dict[head]:
        del in_dict[head]
