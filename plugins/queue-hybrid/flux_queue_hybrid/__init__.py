"""hybrid: the first `reservation-depth` jobs that cannot start get reservations; jobs
after them start early only if they delay none of those (between easy, depth 1, and
conservative, every job)."""

from __future__ import annotations

from flux_sched_graph.policy import Blocked, PassState, QueuePolicy


class Policy(QueuePolicy):
    name = "hybrid"
    defaults = {"queue-depth": 32, "reservation-depth": 64}

    def blocked(self, job, state: PassState) -> Blocked:
        if state.reservations < self.params["reservation-depth"]:
            return Blocked.RESERVE
        return Blocked.SKIP
