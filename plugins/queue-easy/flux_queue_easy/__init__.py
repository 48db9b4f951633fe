"""easy: EASY backfill. The first job that cannot start gets a reservation (the earliest
time it can start); later jobs start now only if they do not delay it. At most
`queue-depth` jobs that cannot start are looked at per pass."""

from __future__ import annotations

from flux_sched_graph.policy import Blocked, PassState, QueuePolicy


class Policy(QueuePolicy):
    name = "easy"

    def blocked(self, job, state: PassState) -> Blocked:
        return Blocked.RESERVE if state.reservations == 0 else Blocked.SKIP
