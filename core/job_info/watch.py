"""The streams behind `job-info.eventlog-watch`.

Each stream sends `{"event": "<one RFC 18 line>\\n"}` responses and ends with ENODATA
when the eventlog can grow no more:

- `MainWatch`: the primary eventlog, from the job manager's memory; ends after `clean`.
- `GuestWatch`: `guest.<path>` (exec.eventlog, output, input, ...). While the job runs the
  data lives in the guest namespace `job-<dec>` and is followed with a KVS append watch;
  once that namespace is removed (its content copied to `job.<dothex>.guest`), the rest is
  read from the copy, skipping what was already sent. It ends at the log's terminating
  entry (`done` for exec.eventlog, eof on every stream for output, eof for input), or when
  nothing more can be written (the job ended).
- `KVSWatch`: any other key of the job's directory, followed until the job ends.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import orjson
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_kvs
from flux.core.job_manager import eventlog
from flux.core.kvs.tree import Dir
from flux.core.util import idset

if TYPE_CHECKING:
    from flux.core.job_info.service import JobInfoService

WAITCREATE = 1


class Watch:
    """One eventlog-watch stream (request `msg`) on job `jobid`, path `path`."""

    def __init__(self, svc: JobInfoService, msg, jobid: int, path: str, flags: int):
        self.svc, self.msg, self.jobid, self.path, self.flags = svc, msg, jobid, path, flags
        self.done = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.msg.sender, self.msg.matchtag)

    def send_line(self, line: str) -> None:
        if not self.done:
            self.svc.respond(self.msg, {"event": line})

    def finish(self, errnum: int = errno.ENODATA, text: str | None = None) -> None:
        """End the stream (ENODATA: normal end) and forget it."""
        if self.done:
            return
        self.done = True
        self.release()
        self.svc.forget(self)
        self.svc.respond_error(self.msg, errnum, text)

    def stop(self) -> None:
        """Drop the stream without answering (the client went away)."""
        if not self.done:
            self.done = True
            self.release()
            self.svc.forget(self)

    def release(self) -> None:
        pass

    def start(self, job) -> None:
        raise NotImplementedError

    def event(self, job, e: dict) -> None:
        """A primary eventlog entry of this watch's job was posted."""


class MainWatch(Watch):
    def start(self, job) -> None:
        raw = job.eventlog_raw() if hasattr(job, "eventlog_raw") else None
        if raw is not None:
            for line in raw.decode().splitlines():
                self.send_line(line + "\n")
        else:
            for e in job.eventlog:
                self.send_line(eventlog.encode(e).decode())
        if not job.active:
            self.finish()

    def event(self, job, e: dict) -> None:
        self.send_line(eventlog.encode(e).decode())
        if e["name"] in ("clean", "invalidate"):
            self.finish()


class Terminator:
    """Knows when an eventlog of a given kind is complete."""

    def __init__(self, path: str):
        self.kind = path
        self.counts: dict[str, int] = {}
        self.eof: dict[str, set[int]] = {}
        self.all_eof: set[str] = set()

    def complete(self, entry: dict) -> bool:
        name = entry.get("name")
        if self.kind == "exec.eventlog":
            return name == "done"
        if self.kind not in ("output", "input"):
            return False
        ctx = entry.get("context") or {}
        if name == "header":
            count = ctx.get("count")
            if isinstance(count, dict):
                self.counts = {k: v for k, v in count.items() if isinstance(v, int)}
            return False
        if name != "data" or not ctx.get("eof"):
            return False
        stream = ctx.get("stream")
        rank = ctx.get("rank", "all")
        if rank == "all":
            self.all_eof.add(stream)
        else:
            try:
                self.eof.setdefault(stream, set()).update(idset.decode(str(rank)))
            except ValueError:
                return False
        if not self.counts:  # no header seen: an eof for "all" ends it
            return stream in self.all_eof
        return all(s in self.all_eof or len(self.eof.get(s, ())) >= n
                   for s, n in self.counts.items())


class GuestWatch(Watch):
    """A `guest.*` eventlog: the guest namespace while it exists, then the primary copy."""

    def __init__(self, *a: Any):
        super().__init__(*a)
        self.sub = self.path[len("guest."):]
        self.offset = 0  # bytes already taken from the log
        self.buf = b""
        self.term = Terminator(self.sub)
        self.handle = None
        self.phase = "waiting"  # waiting -> namespace -> copy
        self.sent = False
        self.subscribed = False

    @property
    def namespace(self) -> str:
        return f"job-{self.jobid}"

    @property
    def _setroot(self) -> str:
        return f"kvs.namespace-{self.namespace}-setroot"

    def release(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self._unsubscribe()

    def _unsubscribe(self) -> None:
        if self.subscribed:
            self.subscribed = False
            self.svc.broker.unsubscribe(self._setroot, self._on_setroot)

    def _on_setroot(self, _ev) -> None:
        # the first commit into the new guest namespace: start following it
        if self.phase == "waiting" and not self.done:
            self._advance(self.svc.job_of(self.jobid))

    def start(self, job) -> None:
        self._advance(job)

    def event(self, job, e: dict) -> None:
        if self.phase == "waiting" or (self.phase == "copy-wait" and e["name"] == "clean"):
            self._advance(job, ended=e["name"] == "clean")

    def _advance(self, job, ended: bool = False) -> None:
        kvs = self.svc.broker.kvs
        if self.phase == "waiting" and self.namespace in kvs.namespaces:
            self._unsubscribe()
            self._watch_namespace()
        elif (job is None or not job.active or ended or self._copied()) \
                and self.phase in ("waiting", "copy-wait"):
            self._unsubscribe()
            self._read_copy(final=True)
        elif self.phase == "waiting" and not self.subscribed:
            # job-exec creates the namespace when the job starts; its first commit
            # publishes a setroot event, which is our cue (no polling)
            self.subscribed = True
            self.svc.broker.subscribe(self._setroot, self._on_setroot)

    def _copied(self) -> bool:
        """True once job-exec has copied the guest namespace to `job.<dothex>.guest`."""
        try:
            node = self.svc.broker.kvs.lookup_node("primary", f"{encode_kvs(self.jobid)}.guest",
                                                   follow=False)
        except FluxError:
            return False
        return type(node) is Dir

    def _watch_namespace(self) -> None:
        self.phase = "namespace"
        kvs = self.svc.broker.kvs
        try:
            h = kvs.watch_internal(self.namespace, self.sub, self._on_data, append=True,
                                   waitcreate=bool(self.flags & WAITCREATE))
        except FluxError as exc:
            if exc.errno == errno.ENOTSUP:  # the namespace went away in between
                self._read_copy(final=False)
            else:
                self.finish(exc.errno, exc.strerror)
            return
        if self.done or self.phase != "namespace":
            h.cancel()  # finished (or moved on) during the first callback
        else:
            self.handle = h

    def _on_data(self, data: bytes | None, errnum: int) -> None:
        if self.done:
            return
        if data is not None:
            self.offset += len(data)
            self._feed(data)
            return
        self.handle = None
        if errnum == errno.ENOTSUP:  # namespace removed: the rest is in the primary copy
            self._read_copy(final=False)
        elif errnum == errno.ENOENT and self.sent:
            self.finish()
        else:
            self.finish(errnum, f"{self.path}: {errno.errorcode.get(errnum, errnum)}")

    def _read_copy(self, final: bool) -> None:
        """Take what is left from `job.<dothex>.guest.<path>` (static once copied)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.phase = "copy"
        key = f"{encode_kvs(self.jobid)}.{self.path}"
        try:
            data = self.svc.broker.kvs.lookup_value("primary", key)
        except FluxError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                job = self.svc.job_of(self.jobid)
                if not final and job is not None and job.active:
                    self.phase = "copy-wait"  # copy not committed yet: retry at clean
                elif self.sent:
                    self.finish()
                else:
                    self.finish(errno.ENOENT, f"{self.path}: no such key for job {self.jobid}")
                return
            self.finish(exc.errno, exc.strerror)
            return
        if len(data) > self.offset:
            rest = data[self.offset:]
            self.offset = len(data)
            self._feed(rest)
        self.finish()

    def _feed(self, data: bytes) -> None:
        buf = self.buf + data
        lines = buf.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            if self.done:
                return
            if not line.strip():
                continue
            self.sent = True
            self.send_line(line.decode("utf-8", "replace") + "\n")
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and self.term.complete(entry):
                self.finish()
                return


class KVSWatch(Watch):
    """Another eventlog-like key in the job's primary directory, followed until the job ends."""

    def __init__(self, *a: Any):
        super().__init__(*a)
        self.handle = None
        self.buf = b""
        self.sent = False

    def release(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def start(self, job) -> None:
        key = f"{encode_kvs(self.jobid)}.{self.path}"
        kvs = self.svc.broker.kvs
        if job is None or not job.active:
            try:
                self._feed(kvs.lookup_value("primary", key))
            except FluxError as exc:
                self.finish(exc.errno, exc.strerror)
                return
            self.finish()
            return
        try:
            h = kvs.watch_internal("primary", key, self._on_data, append=True,
                                   waitcreate=bool(self.flags & WAITCREATE))
        except FluxError as exc:
            self.finish(exc.errno, exc.strerror)
            return
        if self.done:
            h.cancel()
        else:
            self.handle = h

    def _on_data(self, data: bytes | None, errnum: int) -> None:
        if self.done:
            return
        if data is None:
            self.handle = None
            self.finish(errnum if errnum else errno.ENODATA)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        buf = self.buf + data
        lines = buf.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            if line.strip():
                self.sent = True
                self.send_line(line.decode("utf-8", "replace") + "\n")

    def event(self, job, e: dict) -> None:
        if e["name"] == "clean":
            self.finish()
