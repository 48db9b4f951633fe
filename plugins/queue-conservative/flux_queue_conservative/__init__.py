"""conservative: conservative backfill. Every job that cannot start gets a reservation
(up to `max-reservation-depth`), so a job starts early only if it delays no job ahead of
it. Reservations are made for the jobs a pass looks at (`queue-depth` of them)."""

from __future__ import annotations

from flux_sched_graph.policy import Blocked, PassState, QueuePolicy


class Policy(QueuePolicy):
    name = "conservative"
    defaults = {"queue-depth": 32, "max-reservation-depth": 100000}

    def blocked(self, job, state: PassState) -> Blocked:
        if state.reservations < self.params["max-reservation-depth"]:
            return Blocked.RESERVE
        return Blocked.SKIP
