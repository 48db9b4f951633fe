"""Which child instance gets the next job: round robin, or the least loaded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Target(Protocol):
    outstanding: int  # jobs sent and not yet over


class RoundRobin:
    name = "rr"

    def __init__(self) -> None:
        self.next = 0

    def pick(self, children: Sequence[Target]) -> Target:
        c = children[self.next % len(children)]
        self.next = (self.next + 1) % len(children)
        return c


class LeastLoaded:
    """The child with the fewest jobs outstanding (the first such, in child order)."""

    name = "least-loaded"

    def pick(self, children: Sequence[Target]) -> Target:
        return min(children, key=lambda c: c.outstanding)


def make(name: str) -> RoundRobin | LeastLoaded:
    return {"rr": RoundRobin, "least-loaded": LeastLoaded}[name]()
