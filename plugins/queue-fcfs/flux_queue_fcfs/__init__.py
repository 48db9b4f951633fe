"""fcfs: strict order. The first job that cannot start ends the pass; no reservations,
no backfill. `queue-depth` bounds the jobs started per turn of the event loop."""

from __future__ import annotations

from flux_sched_graph.policy import Blocked, PassState, QueuePolicy


class Policy(QueuePolicy):
    name = "fcfs"

    def blocked(self, job, state: PassState) -> Blocked:
        return Blocked.STOP
