"""Resource-time availability of one pool of identical units (a planner).

A planner knows how many units it has (`total`) and a set of spans, each holding
`amount` units over `[start, end)`. It answers "how many are free over this window"
and "earliest time this many are free for this long".

Like Fluxion's planner, it keeps the scheduled points in time in order, each with the
units in use from it to the next point (a step function), and updates them as spans
come and go: adding or removing a span touches only the points inside it, and a query
is a binary search plus a scan of the points inside the window. Points are reference
counted by the spans that start or end there, so removing a span (a reservation
canceled at the start of every scheduling pass) drops the points nobody else uses and
the structure stays as small as the spans it holds.

Changes are applied when a query needs them: an allocation-only workload (no query
between many adds, e.g. the root's planners while nothing is reserved) pays O(1) per
span, and a large batch is applied by rebuilding the points at once.

`spans` (id -> (start, end, amount)) stays readable for callers that check totals.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque

INF = math.inf


class Planner:
    __slots__ = ("total", "spans", "_next", "_times", "_usage", "_refs", "_pending")

    def __init__(self, total: int):
        self.total = total
        self.spans: dict[int, tuple[float, float, int]] = {}
        self._next = 0
        # scheduled points: usage[i] units are in use over [times[i], times[i+1])
        # (the last one up to infinity); before times[0] nothing is in use
        self._times: list[float] = []
        self._usage: list[int] = []
        self._refs: dict[float, int] = {}  # point -> spans starting or ending there
        self._pending: list[tuple] = []  # (start, end, amount, added?) not applied yet

    # ---------------------------------------------------------------- spans
    def add_span(self, start: float, end: float, amount: int) -> int:
        if amount < 0 or end <= start:
            raise ValueError(f"bad span [{start}, {end}) x {amount}")
        sid = self._next
        self._next = sid + 1
        self.spans[sid] = (start, end, amount)
        self._defer((start, end, amount, True))
        return sid

    def rem_span(self, sid: int) -> None:
        start, end, amount = self.spans.pop(sid)
        self._defer((start, end, amount, False))

    def _defer(self, change: tuple) -> None:
        pending = self._pending
        pending.append(change)
        if len(pending) > 64 and len(pending) > 2 * len(self.spans):
            # nobody has queried this planner for a while (allocation-only use, as under
            # fcfs): fold the backlog in now, or it grows with every job ever run
            self._pending = []
            self._rebuild()

    @property
    def times(self) -> list[float]:
        """The scheduled points, in order."""
        if self._pending:
            self._sync()
        return self._times

    @property
    def usage(self) -> list[int]:
        """usage[i]: units in use over [times[i], times[i+1]) (the last: to infinity)."""
        if self._pending:
            self._sync()
        return self._usage

    def _sync(self) -> None:
        pending = self._pending
        self._pending = []
        if len(pending) > 16 and len(pending) * 4 > len(self._times):
            self._rebuild()
            return
        for start, end, amount, add in pending:
            if add:
                i = self._point(start)
                j = self._point(end) if end != INF else len(self._times)
                self._add(i, j, amount)
            else:
                self._remove(start, end, amount)

    def _rebuild(self) -> None:
        refs: dict[float, int] = {}
        delta: dict[float, int] = {}
        for s, e, a in self.spans.values():
            refs[s] = refs.get(s, 0) + 1
            delta[s] = delta.get(s, 0) + a
            if e != INF:
                refs[e] = refs.get(e, 0) + 1
                delta[e] = delta.get(e, 0) - a
        times = sorted(refs)
        usage = []
        u = 0
        for t in times:
            u += delta[t]
            usage.append(u)
        self._times, self._usage, self._refs = times, usage, refs

    def _remove(self, start: float, end: float, amount: int) -> None:
        times = self._times
        i = bisect_left(times, start)
        j = bisect_left(times, end) if end != INF else len(times)
        self._add(i, j, -amount)
        if end != INF:
            self._unpoint(end, j)
        self._unpoint(start, i)

    def update_total(self, total: int) -> None:
        self.total = total

    def _point(self, t: float) -> int:
        """Index of point t, inserted (with the usage in force there) if new."""
        times = self._times
        i = bisect_left(times, t)
        refs = self._refs
        if i < len(times) and times[i] == t:
            refs[t] += 1
        else:
            times.insert(i, t)
            self._usage.insert(i, self._usage[i - 1] if i else 0)
            refs[t] = 1
        return i

    def _unpoint(self, t: float, i: int) -> None:
        refs = self._refs
        n = refs[t] - 1
        if n:
            refs[t] = n
        else:  # no span starts or ends here: the usage does not change at t
            del refs[t]
            del self._times[i]
            del self._usage[i]

    def _add(self, i: int, j: int, amount: int) -> None:
        if j - i == 1:
            self._usage[i] += amount
        elif j > i:
            usage = self._usage
            usage[i:j] = [u + amount for u in usage[i:j]]

    # -------------------------------------------------------------- queries
    def steps(self) -> tuple[list[float], list[int]]:
        """Breakpoints `times` and `usage[i]` = units in use over [times[i], times[i+1])."""
        return self.times, self.usage

    def usage_at(self, t: float) -> int:
        i = bisect_right(self.times, t) - 1
        return self.usage[i] if i >= 0 else 0

    def avail_at(self, t: float) -> int:
        return self.total - self.usage_at(t)

    def avail_during(self, t: float, duration: float) -> int:
        """Units free over the whole of [t, t+duration)."""
        if self._pending:
            self._sync()
        times = self._times
        if not times:
            return self.total
        i = bisect_right(times, t) - 1
        if i < 0:
            i = 0
        j = bisect_left(times, t + duration)
        if j <= i:
            return self.total
        if j - i == 1:
            return self.total - max(self._usage[i], 0)
        return self.total - max(max(self._usage[i:j]), 0)

    def avail_time_first(self, after: float, duration: float, amount: int) -> float | None:
        """Earliest t >= after with `amount` units free over [t, t+duration); None if never."""
        if amount > self.total:
            return None
        times, usage = self.times, self.usage
        if not times:
            return after
        # candidate starts: `after` and every point after it (usage only drops there)
        i0 = bisect_right(times, after)
        limit = self.total - amount  # the most usage a window may see
        n = len(times)
        # sliding-window maximum of usage over [c, c+duration), windows move right
        dq: deque[int] = deque()
        j = max(i0 - 1, 0)  # the step covering `after`
        for k in range(i0 - 1, n):
            c = after if k < i0 else times[k]
            if k >= i0 and usage[k] > limit:
                continue  # busier than allowed right at its start
            start_idx = k if k >= 0 else 0
            end = c + duration
            while j < n and times[j] < end:
                while dq and usage[dq[-1]] <= usage[j]:
                    dq.pop()
                dq.append(j)
                j += 1
            while dq and dq[0] < start_idx:
                dq.popleft()
            peak = usage[dq[0]] if dq else 0
            if peak <= limit:
                return c
        return None

    def verify(self) -> str | None:
        """Why the kept points disagree with the spans (rebuilt from scratch); None if
        they agree. For consistency checks and tests."""
        times, usage, refs = list(self.times), list(self.usage), dict(self._refs)
        self._rebuild()
        if times != self._times or usage != self._usage:
            return (f"points {list(zip(times, usage, strict=True))}, "
                    f"spans give {list(zip(self._times, self._usage, strict=True))}")
        if refs != self._refs:
            return f"point references {refs}, spans give {self._refs}"
        return None

    def points_after(self, after: float) -> list[float]:
        """The scheduled points after `after` (where availability can grow)."""
        return self.times[bisect_right(self.times, after):]
