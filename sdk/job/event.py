"""Job eventlogs as a client sees them (RFC 18, RFC 21): :func:`event_watch`,
:func:`event_wait`, :class:`EventLogEvent`, :class:`JobException`.

Events come from the ``job-info.eventlog-watch`` streaming RPC (RFC 41): one response
``{"event": "<RFC 18 line>"}`` per entry, ended by ENODATA once the log is complete
(``clean`` for ``eventlog``, ``done`` for ``guest.exec.eventlog``, eof everywhere for
``guest.output``) or after ``job-info.eventlog-watch-cancel``.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator

from flux.future import RPC

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

    from flux.handle import Flux

__all__ = [
    "MAIN_EVENTS",
    "EventLogEvent",
    "JobEventWatchFuture",
    "JobException",
    "event_wait",
    "event_watch",
    "event_watch_async",
]

#: Events that may appear in the primary eventlog (RFC 21).
MAIN_EVENTS = frozenset({
    "submit", "validate", "invalidate", "depend", "priority", "flux-restart", "urgency",
    "jobspec-update", "resource-update", "set-flags", "dependency-add", "dependency-remove",
    "alloc", "prolog-start", "prolog-finish", "start", "finish", "release", "epilog-start",
    "epilog-finish", "free", "clean", "exception", "memo", "debug",
})

#: ``flags`` bit of ``job-info.eventlog-watch``: wait for the eventlog to be created.
WAITCREATE = 1


class EventLogEvent(dict):
    """One eventlog entry: a dict ``{timestamp, name, context}`` with attribute access.

    Built from the RFC 18 JSON line or from an already decoded dict; ``context`` is
    always present (``{}`` when the entry has none).
    """

    def __init__(self, event: str | bytes | dict, jobid: int | None = None):
        if isinstance(event, (str, bytes)):
            try:
                event = json.loads(event)
            except ValueError as exc:
                raise ValueError(f"eventlog entry is not valid JSON: {exc}") from None
        if not isinstance(event, dict) or "name" not in event or "timestamp" not in event:
            raise ValueError("eventlog entry must be an object with name and timestamp")
        super().__init__(event)
        if not isinstance(self.get("context"), dict):
            self["context"] = {}
        self.jobid = jobid

    @property
    def name(self) -> str:
        return self["name"]

    @property
    def timestamp(self) -> float:
        return self["timestamp"]

    @property
    def context(self) -> dict:
        return self["context"]

    @property
    def context_string(self) -> str:
        """The context as compact JSON (``""`` when empty)."""
        if not self.context:
            return ""
        return json.dumps(self.context, separators=(",", ":"), ensure_ascii=False)

    def __str__(self) -> str:
        return f"{self.timestamp:<0.5f}: {self.name} {self.context}"


class JobEventWatchFuture(RPC):
    """The stream of ``job-info.eventlog-watch``: :meth:`get_event` returns each entry
    in turn, then None when the log is complete."""

    needs_cancel = True

    def get_event(self, autoreset: bool = True) -> EventLogEvent | None:
        """The next event (blocking until it arrives), or None at the end of the log.

        Errors of the watch (ENOENT: unknown job or eventlog, EPERM: not your job) are
        raised as OSError.  With ``autoreset=False`` the same event is returned again
        until :meth:`reset` is called.
        """
        try:
            payload = self.get()
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                self.needs_cancel = False
                return None
            self.needs_cancel = False
            raise
        if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            raise OSError(errno.EPROTO, "job-info.eventlog-watch: response lacks 'event'")
        event = EventLogEvent(payload["event"], getattr(self, "jobid", None))
        if autoreset:
            self.reset()
        return event

    def cancel(self, stop: bool = False) -> None:
        """Ask job-info to end this watch; the stream then ends with ENODATA.

        With ``stop=True`` no further ``then()`` callback runs."""
        if self.needs_cancel and not self.handle.closed:
            self.needs_cancel = False
            self.handle.rpc("job-info.eventlog-watch-cancel", {"matchtag": self.matchtag},
                            flags=1)  # RPC_NORESPONSE
        if stop:
            self._then = None
            self.handle._active_futures.discard(self)


def event_watch_async(flux_handle: Flux, jobid: int, eventlog: str = "eventlog",
                      flags: int = 0) -> JobEventWatchFuture:
    """Start watching a job eventlog (``eventlog``, ``guest.exec.eventlog``,
    ``guest.output``, ``guest.input``).  Call ``get_event()`` on the returned future,
    from a ``then()`` callback or directly (blocking)."""
    fut = flux_handle.rpc("job-info.eventlog-watch",
                          {"id": int(jobid), "path": eventlog, "flags": flags},
                          flags=2)  # RPC_STREAMING
    fut.__class__ = JobEventWatchFuture
    fut.jobid = int(jobid)
    return fut


def event_watch(flux_handle: Flux, jobid: int, eventlog: str = "eventlog") -> Iterator[EventLogEvent]:
    """Yield each event of a job eventlog as it is written, until the log is complete.

    Leaving the loop early cancels the watch."""
    watcher = event_watch_async(flux_handle, jobid, eventlog)
    try:
        event = watcher.get_event()
        while event is not None:
            yield event
            event = watcher.get_event()
    finally:
        watcher.cancel()


class JobException(Exception):
    """An ``exception`` event of a job: ``timestamp``, ``type``, ``note``, ``severity``
    (0 is fatal)."""

    def __init__(self, event: EventLogEvent | dict):
        if not isinstance(event, EventLogEvent):
            event = EventLogEvent(event)
        ctx = event.context
        self.timestamp: float = event.timestamp
        self.type: str = ctx.get("type", "")
        self.note: str = ctx.get("note", "")
        self.severity: int = ctx.get("severity", 0)
        super().__init__(self)

    def __str__(self) -> str:
        return f"job.exception: type={self.type}: {self.note}"


def event_wait(flux_handle: Flux, jobid: int, name: str, eventlog: str = "eventlog",
               raiseJobException: bool = True) -> EventLogEvent:  # noqa: N803 - flux-core name
    """Wait for the event ``name`` in a job eventlog and return it.

    Raises :class:`JobException` if a fatal exception comes first (unless
    ``raiseJobException`` is False), and OSError(ENODATA) if the log ends without it.
    """
    for event in event_watch(flux_handle, jobid, eventlog):
        if event.name == name:
            return event
        if raiseJobException and event.name == "exception" and event.context.get("severity") == 0:
            raise JobException(event)
    raise OSError(errno.ENODATA, f"eventlog ended before event='{name}'")


def _decode_events(text: Any) -> list[EventLogEvent]:
    """Entries of an eventlog text (several RFC 18 lines)."""
    if isinstance(text, bytes):
        text = text.decode()
    return [EventLogEvent(line) for line in text.splitlines() if line.strip()]
