"""`flux.job.stats`: job counts of an instance (`job-list.job-stats`), as `flux jobs --stats`
prints them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["JobStats"]

_FIELDS = ("depend", "priority", "sched", "run", "cleanup", "inactive", "successful", "failed",
           "timeout", "canceled", "inactive_purged", "pending", "running", "active")


class JobStats:
    """Job statistics of an instance (or of one queue with `queue=`).

    Attributes (all -1 until updated): depend, priority, sched, run, cleanup, inactive,
    total, successful, failed (every unsuccessful job: failed + timeout + canceled),
    timeout, canceled, inactive_purged, and the sums pending (depend+priority+sched),
    running (run+cleanup) and active (total-inactive).
    """

    def __init__(self, handle: Any, queue: str | None = None):
        self.handle = handle
        self.queue = queue
        self.callback: Callable | None = None
        self.cb_kwargs: dict = {}
        for attr in _FIELDS:
            setattr(self, attr, -1)
        self.total = -1

    def _query(self):
        return self.handle.rpc("job-list.job-stats", {})

    def _update_cb(self, rpc) -> None:
        resp = rpc.get()
        if self.queue:
            match = [q for q in resp.get("queues") or [] if q.get("name") == self.queue]
            if not match:
                raise ValueError(f"no stats available for queue {self.queue}")
            resp = match[0]
        for state, count in resp["job_states"].items():
            setattr(self, state, count)
        for key in ("successful", "failed", "timeout", "canceled", "inactive_purged"):
            setattr(self, key, resp.get(key, 0))
        self.pending = self.depend + self.priority + self.sched
        self.running = self.run + self.cleanup
        self.active = self.total - self.inactive
        # "failed" here counts every unsuccessful job, as flux-core reports it
        self.failed += self.timeout + self.canceled
        if self.callback is not None:
            self.callback(self, **self.cb_kwargs)

    def update(self, callback: Callable | None = None, **kwargs: Any) -> None:
        """Fetch asynchronously (the handle's reactor must run); then call callback(self)."""
        self.callback = callback
        self.cb_kwargs = kwargs
        self._query().then(self._update_cb)

    def update_sync(self) -> JobStats:
        """Fetch now and return self."""
        self._update_cb(self._query())
        return self

    def __repr__(self) -> str:
        return (f"PD:{self.pending} R:{self.running} CD:{self.successful} F:{self.failed}")
