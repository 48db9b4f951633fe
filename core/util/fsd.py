"""Flux Standard Duration (RFC 23): `N[ms|s|m|h|d]`, `inf`."""

from __future__ import annotations

import math

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_fsd(text: str | float | int) -> float:
    """Seconds from an FSD string; raises ValueError naming the bad input."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0 or math.isnan(text):
            raise ValueError(f"invalid duration {text!r}: must be >= 0")
        return float(text)
    s = str(text).strip()
    if s.lower() in ("inf", "infinity"):
        return math.inf
    num, mult = s, 1.0
    for unit in ("ms", "s", "m", "h", "d"):
        if s.endswith(unit):
            num, mult = s[: -len(unit)], _UNITS[unit]
            break
    try:
        v = float(num)
    except ValueError:
        raise ValueError(f"invalid Flux Standard Duration '{text}'") from None
    if v < 0 or math.isnan(v) or num.strip() != num or not num:
        raise ValueError(f"invalid Flux Standard Duration '{text}'")
    return v * mult


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
