"""Flux Standard Duration (RFC 23): `N[ms|s|m|h|d]`, `inf`."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


_NUMBER = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_fsd(text: str | float | int) -> float:
    """Seconds from an FSD string (or a number of seconds); raises ValueError naming the
    bad input.  ``inf``/``infinity`` (any case) give ``math.inf``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0 or math.isnan(text):
            raise ValueError(f"invalid duration {text!r}: must be >= 0")
        return float(text) + 0.0
    if not isinstance(text, str):
        raise ValueError(f"invalid Flux Standard Duration {text!r}: not a string or number")
    s = text.strip()
    if s.lower() in ("inf", "infinity"):
        return math.inf
    num, mult = s, 1.0
    for unit in ("ms", "s", "m", "h", "d"):
        if s.endswith(unit):
            num, mult = s[: -len(unit)], _UNITS[unit]
            break
    if not _NUMBER.fullmatch(num):
        raise ValueError(f"invalid Flux Standard Duration '{text}'")
    v = float(num) * mult
    if math.isinf(v):
        raise ValueError(f"invalid Flux Standard Duration '{text}': out of range")
    return v + 0.0


def format_fsd(seconds: float) -> str:
    """Shortest readable FSD for a number of seconds (as flux-core prints it)."""
    if math.isinf(seconds):
        return "infinity"
    if seconds < 60:
        if seconds and seconds < 0.1:
            return f"{seconds * 1000:.4g}ms"
        return f"{seconds:.4g}s"
    if seconds < 3600:
        return f"{seconds / 60:.4g}m"
    if seconds < 86400:
        return f"{seconds / 3600:.4g}h"
    return f"{seconds / 86400:.4g}d"
