"""The pending jobs of a scheduler and the scheduling pass over them.

No broker here: the service (scheduler.py) and the trace replay (bench/sched_trace.py)
drive the same object, the first in wall-clock time, the second in simulated time.

A pass offers jobs to the graph in queue order, starting each that fits now and asking
the queue policy what to do with the others (policy.py). Passes are incremental: a pass
remembers how far it got (`cursor`) and the reservations it holds, so a new job that
sorts after the cursor costs one match and a new job behind a blocked head (fcfs)
costs nothing. Anything that can change earlier decisions (a job freed or canceled,
resources drained, added or removed, a priority changed, a new job sorting before the
cursor) makes the next pass start over from the head of the queue.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from typing import Any

import attrs

from flux_sched_graph.policy import Blocked, PassState, QueuePolicy


@attrs.define(slots=True, eq=False)
class PendingJob:
    id: int
    priority: int
    t_submit: float
    req: Any  # flux.core.resource.graph.Request
    duration: float  # seconds; 0 = no limit
    userid: int = 0
    msg: Any = None  # the sched.alloc request to answer
    key: tuple = ()
    reserved: Any = None  # Allocation held for it in the current pass, if any
    shape: Any = None  # hashable: jobs of one shape differ only in duration (None: unknown)
    t_estimate: float | None = None  # the start time last announced to the job manager


@attrs.define(slots=True)
class PassResult:
    started: list = attrs.Factory(list)  # [(PendingJob, Allocation)]
    reserved: list = attrs.Factory(list)  # [(PendingJob, Allocation)] held by this pass
    unreserved: list = attrs.Factory(list)  # [PendingJob] that lost a reservation
    more: bool = False  # the pass stopped for its per-turn budget: run again soon


class JobQueue:
    """Pending jobs sorted by the policy's key, and the state of the current pass."""

    def __init__(self, graph: Any, policy: QueuePolicy):
        self.graph = graph
        self.policy = policy
        self._keys: list[tuple] = []
        self._jobs: list[PendingJob] = []
        self.by_id: dict[int, PendingJob] = {}
        self._reserved: dict[int, PendingJob] = {}
        self._cursor: tuple | None = None  # key of the last job the pass looked at
        self._state = PassState()
        self._stopped = False  # the pass ended (blocked head or depth reached)
        # shape -> shortest duration that could not start in this pass: within a pass
        # (until a restart) resources only get taken, so a job of that shape that is
        # at least as long cannot start either and is not matched again
        self._failed: dict[Any, float] = {}
        self._restart = True  # the next pass starts over from the head
        self.passes = 0
        self.matches = 0

    # ------------------------------------------------------------ contents
    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[PendingJob]:
        return iter(self._jobs)

    def get(self, jobid: int) -> PendingJob | None:
        return self.by_id.get(jobid)

    def add(self, job: PendingJob) -> None:
        if job.id in self.by_id:
            raise ValueError(f"job {job.id} is already pending")
        job.key = self.policy.sort_key(job)
        i = bisect.bisect_right(self._keys, job.key)
        self._keys.insert(i, job.key)
        self._jobs.insert(i, job)
        self.by_id[job.id] = job
        if self._cursor is not None and job.key < self._cursor:
            self._restart = True  # it goes ahead of jobs already decided on

    def remove(self, jobid: int) -> PendingJob | None:
        job = self.by_id.pop(jobid, None)
        if job is None:
            return None
        self._pop(job)
        if job.reserved is not None:
            self.graph.unreserve(job.id)
            job.reserved = None
            self._reserved.pop(job.id, None)
            self._restart = True
        elif self._cursor is not None and job.key <= self._cursor:
            self._restart = True  # e.g. the blocked head of an fcfs queue
        return job

    def _pop(self, job: PendingJob) -> None:
        i = bisect.bisect_left(self._keys, job.key)
        while self._jobs[i] is not job:
            i += 1
        del self._keys[i]
        del self._jobs[i]

    def reprioritize(self, jobid: int, priority: int) -> bool:
        job = self.by_id.get(jobid)
        if job is None or job.priority == priority:
            return False
        self._pop(job)
        del self.by_id[jobid]
        job.priority = priority
        self.add(job)
        self._restart = True
        return True

    def set_policy(self, policy: QueuePolicy) -> None:
        self.policy = policy
        jobs = self._jobs
        self._keys, self._jobs, self.by_id = [], [], {}
        for job in jobs:
            self.add(job)
        self.changed()

    def changed(self) -> None:
        """Resources or reservations changed: the next pass starts over."""
        self._restart = True

    @property
    def idle(self) -> bool:
        """Nothing left for a pass to do until something changes."""
        return not self._restart and (self._stopped or self._remaining() == 0)

    def _remaining(self) -> int:
        if self._cursor is None:
            return len(self._jobs)
        return len(self._jobs) - bisect.bisect_right(self._keys, self._cursor)

    # ---------------------------------------------------------------- pass
    def run(self, now: float, budget: int | None = None) -> PassResult:
        """Look at up to `budget` jobs (default: the policy's queue-depth)."""
        res = PassResult()
        g = self.graph
        policy = self.policy
        if self._restart:
            if self._reserved:
                for job in self._reserved.values():  # only ours: other queues share the graph
                    g.unreserve(job.id)
                    job.reserved = None
                    res.unreserved.append(job)
                self._reserved = {}
            self._cursor = None
            self._failed = {}
            self._state = PassState()
            self._stopped = False
            self._restart = False
        if self._stopped or not self._jobs:
            return res
        self.passes += 1
        budget = budget or policy.queue_depth
        depth = policy.queue_depth
        state = self._state
        i = 0 if self._cursor is None else bisect.bisect_right(self._keys, self._cursor)
        looked = 0
        while i < len(self._jobs):
            if looked >= budget:
                res.more = True
                break
            job = self._jobs[i]
            looked += 1
            self._cursor = job.key
            shape = job.shape
            length = job.duration or math.inf
            failed = self._failed.get(shape) if shape is not None else None
            if failed is not None and failed <= length:
                alloc = None
            else:
                self.matches += 1
                alloc = g.allocate(job.req, job.id, now, job.duration)
                if alloc is None and shape is not None:
                    self._failed[shape] = min(length, self._failed.get(shape, math.inf))
            if alloc is not None:
                del self._keys[i]
                del self._jobs[i]
                del self.by_id[job.id]
                res.started.append((job, alloc))
                continue
            i += 1
            state.blocked += 1
            action = policy.blocked(job, state)
            if action is Blocked.STOP:
                self._stopped = True
                break
            if action is Blocked.RESERVE:
                self.matches += 1
                r = g.reserve(job.req, job.id, now, job.duration)
                if r is not None:
                    job.reserved = r
                    self._reserved[job.id] = job
                    state.reservations += 1
                    res.reserved.append((job, r))
            if state.blocked >= depth:
                self._stopped = True
                break
        # a job unreserved at the start and reserved again is not "unreserved"
        if res.unreserved:
            res.unreserved = [j for j in res.unreserved if j.reserved is None and j.id in self.by_id]
        return res
