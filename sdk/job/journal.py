"""``flux.job.JournalConsumer``: the events of every job of an instance in one stream.

Reads ``job-manager.events-journal`` (instance owner only): each response is
``{"id": jobid, "events": [entries...], "jobspec"?: ..., "R"?: ...}``.  With
``full=True`` the job manager first replays the eventlogs of the jobs it knows
(inactive ones included), then sends the sentinel ``{"id": -1, "events": []}``, then
live events.  The consumer holds the replayed events back until the sentinel, sorts
them by time, then returns them (and later live ones) one per :meth:`poll` or per
callback.  Same interface as flux-core's ``flux.job.journal``.
"""

from __future__ import annotations

import errno
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flux.job.event import EventLogEvent
from flux.job.JobID import JobID

__all__ = ["SENTINEL_EVENT", "JournalConsumer", "JournalEvent"]

_RPC_NORESPONSE = 1
_RPC_STREAMING = 2


class JournalEvent(EventLogEvent):
    """One journal event: an :class:`~flux.job.EventLogEvent` (``name``,
    ``timestamp``, ``context``) plus ``jobid``, and the job's ``jobspec`` (on
    ``submit`` events) and ``R`` (on ``alloc`` events) when the journal sent them.

    The sentinel that ends the replayed history is an empty event: no name, jobid -1,
    :meth:`is_empty` True.
    """

    def __init__(self, jobid: int, event: dict, jobspec: dict | None = None,
                 R: dict | None = None):  # noqa: N803 - flux-core's name
        if "name" in event:
            super().__init__(event)
            self.jobid: int = JobID(jobid)
        else:  # the sentinel: no name, stamped now (as flux-core does)
            dict.__init__(self, event)
            self.setdefault("timestamp", time.time())
            self["context"] = {}
            self.jobid = int(jobid)  # -1 is not a valid JobID
        self.jobspec = jobspec
        self.R = R

    @property
    def name(self) -> str:
        return self.get("name", "")

    def is_empty(self) -> bool:
        """True for the sentinel event."""
        return self.jobid == -1

    def __str__(self) -> str:
        if self.is_empty():
            return "-1: End of historical data stream"
        return f"{JobID(self.jobid).f58}: {self.timestamp:<0.5f} {self.name} {self.context_string}".rstrip()


#: The event :meth:`JournalConsumer.poll` returns for the sentinel when
#: ``include_sentinel`` is set (compare with ``==`` or use ``is_empty()``).
SENTINEL_EVENT = JournalEvent(-1, {})


class JournalConsumer:
    """Consume the job manager's journal synchronously (:meth:`poll`) or through a
    callback (:meth:`set_callback`, then run the handle's reactor).

    :param flux_handle: an open :class:`flux.Flux` handle (of the instance owner)
    :param full: first replay the events of jobs the instance already knows
    :param since: drop events whose timestamp is not greater than this
    :param include_sentinel: return :data:`SENTINEL_EVENT` between history and live
        events (only with ``full``)

    Call :meth:`start` first; :meth:`stop` ends the stream, after which ``poll()`` (or
    the callback) gives None once the events already received are consumed.
    """

    SENTINEL_EVENT = SENTINEL_EVENT

    def __init__(self, flux_handle: Any, full: bool = True, since: float = 0.0,
                 include_sentinel: bool = False):
        if not isinstance(since, (int, float)) or isinstance(since, bool):
            raise ValueError(f"since must be a timestamp (number), not {since!r}")
        self.handle = flux_handle
        self.topic = "job-manager.events-journal"
        self.cancel_topic = "job-manager.events-journal-cancel"
        self.full = bool(full)
        self.since = float(since)
        self.include_sentinel = bool(include_sentinel)
        self.backlog: deque = deque()
        self.rpc: Any = None
        self.cb: Callable | None = None
        self.cb_args: tuple = ()
        self.cb_kwargs: dict = {}
        self.processing_inactive = self.full

    @property
    def request_payload(self) -> dict:
        return {"full": self.full}

    # ------------------------------------------------------------ the stream
    def start(self) -> JournalConsumer:
        """Send the journal request (again, if called twice: events may repeat)."""
        self.processing_inactive = self.full
        self.rpc = self.handle.rpc(self.topic, self.request_payload, 0, _RPC_STREAMING)
        if self.cb is not None:
            self.rpc.then(self._on_response)
        return self

    def stop(self) -> None:
        """Ask the job manager to end the stream."""
        if self.rpc is None:
            raise RuntimeError("stop() called before start()")
        self.handle.rpc(self.cancel_topic, {"matchtag": self.rpc.matchtag}, 0, _RPC_NORESPONSE)

    def _sort_backlog(self) -> None:
        self.processing_inactive = False
        self.backlog = deque(sorted(self.backlog, key=lambda e: e.timestamp))
        if self.include_sentinel:
            self.backlog.append(self.SENTINEL_EVENT)

    def _enqueue(self, resp: dict | None) -> None:
        if resp is None:  # end of stream
            self.backlog.append(None)
            return
        if not isinstance(resp, dict) or not isinstance(resp.get("events"), list):
            raise OSError(errno.EPROTO, f"{self.topic}: malformed response {resp!r}")
        jobid, jobspec, R = resp.get("id"), resp.get("jobspec"), resp.get("R")
        for entry in resp["events"]:
            event = JournalEvent(jobid, entry, jobspec=jobspec, R=R)
            if event.timestamp > self.since:
                self.backlog.append(event)

    @staticmethod
    def _is_sentinel(resp: Any) -> bool:
        return isinstance(resp, dict) and resp.get("events") == []

    def _next_response(self, timeout: float) -> dict | None:
        try:
            resp = self.rpc.wait_for(timeout).get()
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
            resp = None
        self.rpc.reset()
        return resp

    def poll(self, timeout: float = -1.0) -> JournalEvent | None:
        """The next event, waiting up to ``timeout`` seconds (-1: forever); None once
        the stream has ended.  With ``full``, the first call returns only after the
        whole history has arrived.  Raises TimeoutError when nothing came in time."""
        if self.rpc is None:
            raise RuntimeError("poll() called before start()")
        while self.processing_inactive:
            resp = self._next_response(timeout)
            if resp is None:  # stopped during the history
                self._sort_backlog()
                self._enqueue(None)
            elif self._is_sentinel(resp):
                self._sort_backlog()
            else:
                self._enqueue(resp)
        while not self.backlog:
            self._enqueue(self._next_response(timeout))
        event = self.backlog.popleft()
        if event is None:
            self.backlog.append(None)  # stays ended for later calls
        return event

    # ------------------------------------------------------------ callbacks
    def set_callback(self, event_cb: Callable, *args: Any, **kwargs: Any) -> JournalConsumer:
        """Call ``event_cb(event, *args, **kwargs)`` for each event from the reactor;
        ``event`` is None once the stream has ended."""
        if not callable(event_cb):
            raise TypeError("event_cb must be callable")
        self.cb, self.cb_args, self.cb_kwargs = event_cb, args, kwargs
        if self.rpc is not None:
            self.rpc.then(self._on_response)
        return self

    def _on_response(self, rpc: Any) -> None:
        try:
            try:
                resp = rpc.get()
            except OSError as exc:
                if exc.errno != errno.ENODATA:
                    raise
                resp = None
            if resp is None:
                if self.processing_inactive:
                    self._sort_backlog()
                self._enqueue(None)
            elif self.processing_inactive and self._is_sentinel(resp):
                self._sort_backlog()
            else:
                self._enqueue(resp)
        finally:
            rpc.reset()
        if self.processing_inactive:
            return  # history is held back until it can be sorted
        while self.backlog:
            self.cb(self.backlog.popleft(), *self.cb_args, **self.cb_kwargs)
