"""Task output: pipes read by the shell, written to the output eventlog (RFC 24) or files.

Each task's stdout and stderr is a pipe the shell reads without blocking. Data is
kept per task and stream, cut at line ends (`output.<stream>.buffer.type=line`, the
default; `none` sends what was read), and turned into `data` events in batches:
a batch is committed to the job's `output` eventlog (one KVS append) after
`output.batch-timeout` seconds (default 0.5), at once when much is buffered, and at
once when an eof arrives, so short jobs finish without waiting for a timer.

A stream sent to a file (`output.<stream>.type=file`, set up by the `output` shell
plugin) gets the file itself as the task's descriptor, so the data never passes
through the shell, unless `label` asks for `<rank>: ` prefixes on each line.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import time
from typing import Any

import orjson
from flux.core.util import idset

READ_SIZE = 65536
FLUSH_BYTES = 4 << 20  # commit early when this much is buffered
LONG_LINE = 1 << 20  # a partial line longer than this is sent anyway
DEFAULT_LIMIT = 1 << 30  # flux-core's single-user default (output.limit)


def parse_size(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{what} must be a size, not {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        s = v.strip().upper()
        mult = 1
        for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
            if s.endswith(suffix):
                s, mult = s[:-1], m
                break
        try:
            return int(float(s) * mult)
        except ValueError:
            pass
    raise ValueError(f"{what} must be a size such as 10M, not {v!r}")


def entry(name: str, context: dict, ts: float | None = None) -> bytes:
    """One RFC 18 eventlog line."""
    return orjson.dumps({"timestamp": time.time() if ts is None else ts, "name": name,
                         "context": context}) + b"\n"


def io_context(stream: str, rank: str, data: bytes | None = None, eof: bool = False) -> dict:
    """An RFC 24 data context; non-UTF-8 data is sent as base64."""
    ctx: dict = {"stream": stream, "rank": rank}
    if data:
        try:
            ctx["data"] = data.decode()
        except UnicodeDecodeError:
            ctx["data"] = base64.b64encode(data).decode()
            ctx["encoding"] = "base64"
    if eof:
        ctx["eof"] = True
    return ctx


def header(ntasks: int, streams: tuple[str, ...] = ("stdout", "stderr"),
           options: dict | None = None) -> dict:
    return {"version": 1, "encoding": {s: "UTF-8" for s in streams},
            "count": {s: ntasks for s in streams}, "options": options or {}}


def _utf8_cut(buf: bytes | bytearray) -> int:
    """Length of buf without an incomplete UTF-8 sequence at its end."""
    n = len(buf)
    for back in range(1, min(4, n) + 1):
        b = buf[n - back]
        if b < 0x80:
            return n
        if b >= 0xC0:  # lead byte: is its sequence complete?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return n if back >= need else n - back
    return n


class FileSink:
    """An output file shared by the tasks whose stream goes there."""

    def __init__(self, path: str, mode: str, label: bool):
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        if mode != "append":
            flags |= os.O_TRUNC
        self.path = path
        self.label = label
        self.fd = os.open(path, flags, 0o644)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            view = view[n:]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Stream:
    __slots__ = ("task", "name", "fd", "buf", "eof", "sink", "rank", "line")

    def __init__(self, task: Any, name: str, fd: int, sink: FileSink | None, line: bool):
        self.task = task
        self.name = name
        self.fd = fd
        self.buf = bytearray()
        self.eof = False
        self.sink = sink
        self.rank = str(task.rank)
        self.line = line


class Output:
    """The output of one shell's tasks."""

    def __init__(self, shell: Any, options: dict):
        self.shell = shell
        self.loop = asyncio.get_running_loop()
        opts = options.get("output") or {}
        if not isinstance(opts, dict):
            raise ValueError("shell option output must be an object")
        self.opts = opts
        self.batch_timeout = float(opts.get("batch-timeout", 0.5))
        self.limit = parse_size(opts.get("limit", DEFAULT_LIMIT), "output.limit")
        self.line = {s: ((opts.get(s) or {}).get("buffer") or {}).get("type", "line") != "none"
                     for s in ("stdout", "stderr")}
        self.sinks: dict[str, FileSink | dict[int, FileSink]] = {}
        self.streams: list[_Stream] = []
        self.open_streams = 0
        self.pending: list[bytes] = []  # encoded eventlog lines, in order
        self.dirty: list[_Stream] = []
        self.buffered = 0
        self.written = 0
        self.truncated = False
        self.timer: asyncio.TimerHandle | None = None
        self.flush_scheduled = False
        self.flush_handle: asyncio.Handle | None = None
        self.holding = False
        self.inflight = 0
        self.idle: asyncio.Future | None = None
        self.closed_cb = None  # called when every stream reached eof

    # ------------------------------------------------------------- set-up
    def redirect(self, stream: str, sink: FileSink | dict[int, FileSink]) -> None:
        """Send `stream` of this shell's tasks to a file (one for all, or one per task)."""
        self.sinks[stream] = sink

    def sink_for(self, stream: str, task: Any) -> FileSink | None:
        s = self.sinks.get(stream)
        if isinstance(s, dict):
            return s.get(task.rank)
        return s

    def task_fds(self, task: Any) -> tuple[int, int]:
        """The stdout and stderr descriptors to give a task (pipe ends or files);
        the shell closes the returned pipe ends once the task has started."""
        fds = []
        for name in ("stdout", "stderr"):
            given = task.stdout_fd if name == "stdout" else task.stderr_fd
            if given is not None:
                fds.append(given)
                continue
            sink = self.sink_for(name, task)
            if sink is not None and not sink.label:
                fds.append(sink.fd)
                continue
            r, w = os.pipe()
            os.set_blocking(r, False)
            st = _Stream(task, name, r, sink, self.line[name])
            self.streams.append(st)
            self.open_streams += 1
            self.loop.add_reader(r, self._readable, st)
            fds.append(w)
        return fds[0], fds[1]

    def add_stream(self, task: Any, name: str, fd: int, line: bool = False) -> None:
        """Read `name` output of `task` from `fd` (non-blocking; a plugin's source such
        as a pty master), until EOF or an error such as EIO. The fd is closed then."""
        os.set_blocking(fd, False)
        st = _Stream(task, name, fd, self.sink_for(name, task), line)
        self.streams.append(st)
        self.open_streams += 1
        self.loop.add_reader(fd, self._readable, st)

    # ------------------------------------------------------------- reading
    def _readable(self, st: _Stream) -> None:
        try:
            data = os.read(st.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            st.buf += data
            self.buffered += len(data)
            if len(st.buf) == len(data):
                self.dirty.append(st)
            if self.buffered >= FLUSH_BYTES:
                self._flush_soon()
            elif self.timer is None and not self.flush_scheduled:
                self.timer = self.loop.call_later(self.batch_timeout, self._timer)
            return
        self.loop.remove_reader(st.fd)
        os.close(st.fd)
        st.fd = -1
        st.eof = True
        if not st.buf:
            self.dirty.append(st)
        self.open_streams -= 1
        self._flush_soon()  # an eof is sent at once (RFC 24)
        if self.open_streams == 0 and self.closed_cb is not None:
            self.closed_cb()

    def _timer(self) -> None:
        self.timer = None
        self.flush()

    def _flush_soon(self) -> None:
        # coalesce the eofs of one loop turn (both pipes close when a task exits)
        if not self.flush_scheduled and not self.holding:
            self.flush_scheduled = True
            self.flush_handle = self.loop.call_soon(self.flush)

    def hold(self) -> None:
        """Stop sending: what is left goes out with close() (the shell is finishing)."""
        self.holding = True
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        self.flush_scheduled = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _take(self, st: _Stream) -> bytes:
        buf = st.buf
        if st.eof:
            n = len(buf)
        else:
            n = _utf8_cut(buf)
            if st.line:
                nl = buf.rfind(b"\n", 0, n)
                if nl >= 0:
                    n = nl + 1
                elif n < LONG_LINE:
                    n = 0
        data = bytes(buf[:n])
        del buf[:n]
        return data

    # ------------------------------------------------------------- writing
    def flush(self, commit: bool = True) -> None:
        """Turn buffered data into events and commit them (one KVS append)."""
        self.flush_scheduled = False
        self.flush_handle = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        dirty, self.dirty = self.dirty, []
        now = time.time()
        for st in dirty:
            data = self._take(st)
            self.buffered -= len(data)
            if st.buf:
                self.dirty.append(st)  # a partial line waits for its end
            if st.sink is not None:
                if data:
                    self._to_file(st, data)
                if st.eof:
                    self.pending.append(entry("data", io_context(st.name, st.rank, eof=True), now))
                continue
            if data:
                if self.written + len(data) > self.limit:
                    data = self._limit(st, data)
                self.written += len(data)
            if data or st.eof:
                self.pending.append(entry("data", io_context(st.name, st.rank, data, st.eof), now))
        if self.dirty and self.timer is None and not self.holding:
            self.timer = self.loop.call_later(self.batch_timeout, self._timer)
        if commit:
            self.commit()

    def _limit(self, st: _Stream, data: bytes) -> bytes:
        keep = max(0, self.limit - self.written)
        if not self.truncated:
            self.truncated = True
            self.log(3, f"stdout/stderr of the job exceeded output.limit of {self.limit} "
                        "bytes; the rest is dropped", component="output")
        return data[:keep]

    def _to_file(self, st: _Stream, data: bytes) -> None:
        prefix = st.rank.encode() + b": "
        lines = data.splitlines(keepends=True)
        st.sink.write(b"".join(prefix + line for line in lines))

    def append(self, name: str, context: dict) -> None:
        """Queue an event (log, redirect) for the output eventlog."""
        self.pending.append(entry(name, context))
        self._flush_soon()

    def log(self, level: int, message: str, component: str | None = None) -> None:
        ctx: dict = {"level": level, "message": message, "rank": self.shell.shell_rank}
        if component:
            ctx["component"] = component
        self.append("log", ctx)

    def commit(self) -> None:
        if not self.pending:
            return
        data, self.pending = b"".join(self.pending), []
        fut = self.shell.kvs_append("output", data)
        if fut is None:
            return
        self.inflight += 1
        fut.add_done_callback(self._committed)

    def _committed(self, fut: asyncio.Future) -> None:
        self.inflight -= 1
        if not fut.cancelled() and fut.exception() is not None:
            exc = fut.exception()
            if getattr(exc, "errno", 0) != errno.ENOTSUP:  # namespace gone: job is over
                self.shell.warn(f"writing output to the KVS failed: {exc}")
        if self.inflight == 0 and self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    def redirect_events(self, ranks: list[int]) -> None:
        for name in ("stdout", "stderr"):
            s = self.sinks.get(name)
            if s is None:
                continue
            if isinstance(s, dict):
                for rank, sink in s.items():
                    self.append("redirect", {"stream": name, "rank": str(rank), "path": sink.path})
            else:
                self.append("redirect", {"stream": name, "rank": idset.encode(ranks),
                                         "path": s.path})

    def task_done(self, task: Any) -> None:
        """A task exited: streams it wrote directly to files are complete."""
        for name, given in (("stdout", task.stdout_fd), ("stderr", task.stderr_fd)):
            sink = self.sink_for(name, task)
            if given is not None or (sink is not None and not sink.label):
                self.pending.append(entry("data", io_context(name, str(task.rank), eof=True)))
        self._flush_soon()

    async def close(self, handover: bool = False) -> bytes:
        """Send what is left and wait until the KVS has it.

        With `handover`, what is left is returned instead of committed (the shell
        server gives it to exec with its finish report: one message less per job);
        earlier commits are still waited for, so the order of events is kept."""
        self.flush(commit=not handover)
        while self.dirty:  # partial lines at the very end
            self.flush(commit=not handover)
        if self.inflight:
            self.idle = self.loop.create_future()
            await self.idle
        for s in self.sinks.values():
            for sink in (s.values() if isinstance(s, dict) else (s,)):
                sink.close()
        tail, self.pending = b"".join(self.pending), []
        return tail

    def abort(self) -> None:
        for st in self.streams:
            if st.fd >= 0:
                self.loop.remove_reader(st.fd)
                os.close(st.fd)
                st.fd = -1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
