"""Resource-time availability of one pool of identical units (a planner).

A planner knows how many units it has (`total`) and a set of spans, each holding
`amount` units over `[start, end)`. It answers "how many are free over this window"
and "earliest time this many are free for this long". Leaves of the resource graph
have one (created on first use), node and root vertices have one per pruned type.

Spans live in a dict (O(1) add/remove, since add/remove is on the allocation hot path);
the step function of usage over time is rebuilt lazily, only when a time query needs it
and something changed since the last one.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque

INF = math.inf


class Planner:
    __slots__ = ("total", "spans", "_next", "_steps")

    def __init__(self, total: int):
        self.total = total
        self.spans: dict[int, tuple[float, float, int]] = {}
        self._next = 0
        self._steps: tuple[list[float], list[int]] | None = None

    # ---------------------------------------------------------------- spans
    def add_span(self, start: float, end: float, amount: int) -> int:
        if amount < 0 or end <= start:
            raise ValueError(f"bad span [{start}, {end}) x {amount}")
        sid = self._next
        self._next = sid + 1
        self.spans[sid] = (start, end, amount)
        self._steps = None
        return sid

    def rem_span(self, sid: int) -> None:
        del self.spans[sid]
        self._steps = None

    def update_total(self, total: int) -> None:
        self.total = total

    # -------------------------------------------------------------- queries
    def steps(self) -> tuple[list[float], list[int]]:
        """Breakpoints `times` and `usage[i]` = units in use over [times[i], times[i+1])."""
        if self._steps is None:
            delta: dict[float, int] = {}
            for s, e, a in self.spans.values():
                delta[s] = delta.get(s, 0) + a
                if e != INF:
                    delta[e] = delta.get(e, 0) - a
            times = sorted(delta)
            usage = []
            u = 0
            for t in times:
                u += delta[t]
                usage.append(u)
            self._steps = (times, usage)
        return self._steps

    def usage_at(self, t: float) -> int:
        times, usage = self.steps()
        i = bisect_right(times, t) - 1
        return usage[i] if i >= 0 else 0

    def avail_at(self, t: float) -> int:
        return self.total - self.usage_at(t)

    def avail_during(self, t: float, duration: float) -> int:
        """Units free over the whole of [t, t+duration)."""
        spans = self.spans
        if not spans:
            return self.total
        end = t + duration
        if len(spans) <= 4:  # the common leaf case: no step function needed
            over = [(s, e, a) for s, e, a in spans.values() if s < end and e > t]
            if len(over) <= 1:
                return self.total - (over[0][2] if over else 0)
            peak = 0
            for s0, _e0, _a0 in over:  # usage peaks at some span's start within the window
                p = max(s0, t)
                u = sum(a for s, e, a in over if s <= p < e)
                peak = max(peak, u)
            return self.total - peak
        times, usage = self.steps()
        i = bisect_right(times, t) - 1
        j = bisect_left(times, end)
        lo = max(i, 0)
        peak = max(usage[lo:j]) if j > lo else 0
        return self.total - max(peak, 0)

    def avail_time_first(self, after: float, duration: float, amount: int) -> float | None:
        """Earliest t >= after with `amount` units free over [t, t+duration); None if never."""
        if amount > self.total:
            return None
        if not self.spans:
            return after
        times, usage = self.steps()
        # candidate starts: `after` and every breakpoint after it (usage only drops there)
        i0 = bisect_right(times, after)
        cands = [after] + times[i0:]
        # sliding-window maximum of usage over [c, c+duration), windows move right
        n = len(times)
        dq: deque[int] = deque()
        j = max(bisect_right(times, after) - 1, 0)  # the step covering `after`
        for c in cands:
            start_idx = bisect_right(times, c) - 1
            end = c + duration
            while j < n and times[j] < end:
                while dq and usage[dq[-1]] <= usage[j]:
                    dq.pop()
                dq.append(j)
                j += 1
            while dq and dq[0] < max(start_idx, 0):
                dq.popleft()
            peak = max(usage[dq[0]], 0) if dq else 0
            if self.total - peak >= amount:
                return c
        return None
