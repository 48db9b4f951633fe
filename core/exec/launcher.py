"""ShellLauncher: runs real jobs, one job shell per rank of R (RFC 32 exec side).

For each job, on rank 0 (where job-exec and the KVS live, so these are in-process
calls, not messages):
1. lay the tasks out from jobspec and R (the same code the shells run, so a job
   that cannot be laid out fails at once, before anything is created);
2. create the job's guest namespace `job-<dec>` owned by the job's user, write the
   exec eventlog's `init` and `starting` and the output/input eventlog headers
   there, and make the primary `job.<dothex>.guest` a symlink to it;
3. send one streaming `job-shell.start {id, userid, jobspec, R}` to each rank of
   R (served by that rank's shell server, core/exec/shellhost.py); responses:
   `start`, `task-exit`, `exception`, and last `finish {status, task?}`;
4. when every shell has started: `shell.init`, `shell.start {taskmap}` in the exec
   eventlog and the `start` response to the job manager; on the first task exit
   anywhere: `shell.task-exit`, and the `exit-timeout` (default 30 s) for the rest;
5. when every shell has finished: `complete {status}` (the largest shell status),
   `finish`, then `done`, the namespace copied to `job.<dothex>.guest` as a real
   directory and removed, and `release`.

A shell that cannot be reached, or whose server dies, fails the job with an `exec`
exception naming the rank. Signals (`kill`) go to every rank still running.
"""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Any

import orjson
from flux.core.errors import FluxError
from flux.core.exec.service import ExecJob, ExecService, Launcher
from flux.core.job.fluid import encode_f58plain, encode_kvs
from flux.core.message import FLAG_STREAMING, Message
from flux.core.util.fsd import parse_fsd

APPEND = 32
DEFAULT_EXIT_TIMEOUT = 30.0
LOST_STATUS = 1 << 8  # finish status for a shell that was lost


def _entry(name: str, context: dict | None = None, ts: float | None = None) -> bytes:
    e: dict = {"timestamp": time.time() if ts is None else ts, "name": name}
    if context is not None:
        e["context"] = context
    return orjson.dumps(e) + b"\n"


def _append(key: str, data: bytes) -> dict:
    return {"key": key, "flags": APPEND, "raw": data}


def _fsd(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"


def exit_timeout_of(options: dict) -> float | None:
    """The `exit-timeout` shell option in seconds (None: no timeout)."""
    v = options.get("exit-timeout", DEFAULT_EXIT_TIMEOUT)
    if isinstance(v, str):
        if v.lower() == "none":
            return None
        try:
            return parse_fsd(v)
        except ValueError:
            raise ValueError(f"exit-timeout={v!r} is not a valid duration (or 'none')") from None
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError(f"exit-timeout={v!r} is not a valid duration (or 'none')")
    return float(v)


class _Stream:
    """A streaming RPC whose responses go to a callback (no task per stream)."""

    __slots__ = ("broker", "tag", "cb")

    def __init__(self, broker: Any, topic: str, payload: dict, nodeid: int, cb):
        self.broker = broker
        self.cb = cb
        self.tag = broker.next_matchtag()
        broker.internal_pending[self.tag] = self
        broker.send_internal(Message.request(topic, payload, nodeid=nodeid,
                                             flags=FLAG_STREAMING, matchtag=self.tag))

    def deliver(self, msg: Message) -> None:
        if msg.errnum:
            self.broker.internal_pending.pop(self.tag, None)
        self.cb(msg)

    def cancel(self) -> None:
        self.broker.internal_pending.pop(self.tag, None)


class LaunchState:
    """One job as the launcher follows it (ExecJob.handle)."""

    __slots__ = ("job", "info", "ns", "guest", "ranks", "streams", "started", "finished",
                 "first_exit", "exit_timer", "exit_timeout", "pending_kill", "sent",
                 "finalizing", "lost", "stopped")

    def __init__(self, job: ExecJob):
        self.job = job
        self.info = None
        self.ns = f"job-{job.id}"
        self.guest = encode_kvs(job.id) + ".guest"
        self.ranks: list[int] = []
        self.streams: dict[int, _Stream] = {}
        self.started: set[int] = set()
        self.finished: dict[int, int] = {}
        self.first_exit: dict | None = None
        self.exit_timer: asyncio.TimerHandle | None = None
        self.exit_timeout: float | None = DEFAULT_EXIT_TIMEOUT
        self.pending_kill = 0
        self.sent = False
        self.finalizing = False
        self.lost = False
        self.stopped = False


class ShellLauncher(Launcher):
    def __init__(self, exec_service: ExecService):
        super().__init__(exec_service)
        self.broker = exec_service.broker

    # ================================================================ launch
    async def launch(self, job: ExecJob) -> None:
        from flux.shell.info import JobInfo, ShellInfoError
        from flux.shell.output import header

        state = LaunchState(job)
        job.handle = state
        try:
            info = JobInfo(job.id, job.jobspec, job.R)
            state.exit_timeout = exit_timeout_of(info.options)
        except (ShellInfoError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        state.info = info
        state.ranks = [r.rank for r in info.ranks]
        kvs = self.broker.kvs
        J = None
        if job.userid != self.broker.owner:  # the IMP runs a guest's shell: it needs J
            try:
                J = kvs.lookup_value("primary", encode_kvs(job.id) + ".J").decode()
            except FluxError as exc:
                raise ValueError(f"cannot read the job's signed request J: {exc.strerror}") from None
        # in memory at once; the disk writes of this whole step share one KVS flush
        try:
            created = kvs.namespace_create_nowait(state.ns, owner=job.userid)
        except FluxError as exc:
            if exc.errno != errno.EEXIST:
                raise
            self._watch(kvs.namespace_remove_nowait(state.ns), state, "removing a stale")
            created = kvs.namespace_create_nowait(state.ns, owner=job.userid)
        self._watch(created, state, "creating")
        now = time.time()
        kvs.commit_nowait(state.ns, [
            _append("exec.eventlog", _entry("init", None, now) + _entry("starting", None, now)),
            _append("output", _entry("header", header(info.ntasks), now)),
            _append("input", _entry("header", header(info.ntasks, ("stdin",)), now)),
        ])
        kvs.commit_nowait("primary", [{"key": state.guest, "flags": 0,
                                       "dirent": {"ver": 1, "type": "symlink",
                                                  "data": {"namespace": state.ns,
                                                           "target": "."}}}])
        if job.id not in self.exec.jobs:
            return  # gone meanwhile (broker stopping)
        if state.pending_kill:
            # killed before any shell started: nothing to signal
            for r in state.ranks:
                state.finished[r] = state.pending_kill & 0x7F
            self._finalize(state)
            return
        payload = {"id": job.id, "userid": job.userid, "jobspec": job.jobspec, "R": job.R}
        if J is not None:
            payload["J"] = J
        state.sent = True
        for rank in state.ranks:
            state.streams[rank] = _Stream(self.broker, "job-shell.start", payload, rank,
                                          lambda m, r=rank: self._response(state, r, m))

    # ============================================================= responses
    def _response(self, state: LaunchState, rank: int, msg: Message) -> None:
        job = state.job
        if msg.errnum:
            if rank not in state.finished:
                state.lost = True
                text = msg.errstr() or errno.errorcode.get(msg.errnum, str(msg.errnum))
                self.exec.exception(job, "exec", f"lost contact with job shell on broker rank "
                                                 f"{rank}: {text}")
                self._rank_finished(state, rank, LOST_STATUS)
            return
        try:
            p = msg.data()
            t = p["type"]
            data = p.get("data") or {}
        except (ValueError, KeyError, TypeError):
            self.broker.log(3, f"job-exec: job {job.id}: malformed job-shell response from "
                               f"rank {rank}")
            return
        if t == "finish":
            s = state.streams.pop(rank, None)
            if s is not None:
                s.cancel()
            self._rank_finished(state, rank, int(data.get("status", 0)), data.get("task"),
                                data.get("output"))
        elif t == "start":
            state.started.add(rank)
            if len(state.started) == len(state.ranks):
                self._all_started(state)
        elif t == "exception":
            self.exec.exception(job, data.get("type", "exec"), data.get("note", ""),
                                int(data.get("severity", 0)))
        elif t == "task-exit":
            entry = self._task_exit(state, data)
            if entry:
                self._commit_ns(state, [_append("exec.eventlog", entry)])

    def _all_started(self, state: LaunchState) -> None:
        job, info = state.job, state.info
        now = time.time()
        ctx = {"leader-rank": state.ranks[0], "size": len(state.ranks),
               "service": f"{job.userid}-shell-{encode_f58plain(job.id)}"}
        self._commit_ns(state, [_append("exec.eventlog", _entry("shell.init", ctx, now)
                        + _entry("shell.start", {"taskmap": info.taskmap.to_dict()}, now))])
        if not state.stopped:  # a job canceled while its shells started never ran
            self.exec.started(job)

    def _task_exit(self, state: LaunchState, task: dict | None) -> bytes:
        """The `shell.task-exit` entry for the job's first task exit (else b""), and
        the exit-timeout for the tasks still running."""
        if task is None or state.first_exit is not None:
            return b""
        state.first_exit = task
        if task.get("signaled") and state.job.critical is not None and not state.job.signaled:
            import signal

            sig = task["signaled"]
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
            self.exec.exception(state.job, "exec", f"child instance broker (task {task.get('rank')})"
                                                   f" died: killed by signal {name}")
        ts = task.get("timestamp")
        ctx = {k: v for k, v in task.items() if k != "timestamp"}
        if (state.exit_timeout is not None and not state.finalizing
                and len(state.finished) < len(state.ranks)):
            state.exit_timer = asyncio.get_running_loop().call_later(
                state.exit_timeout, self._exit_timeout, state)
        return _entry("shell.task-exit", ctx, ts)

    def _exit_timeout(self, state: LaunchState) -> None:
        state.exit_timer = None
        if state.finalizing:
            return
        self.exec.exception(state.job, "exec",
                            f"{_fsd(state.exit_timeout)} timeout after first task exit")
        self._signal(state, 9)

    def _rank_finished(self, state: LaunchState, rank: int, status: int,
                       task: dict | None = None, output: str | None = None) -> None:
        """A shell is done; its last output events (and first task exit) come along."""
        if rank in state.finished:
            return
        state.finished[rank] = status
        if len(state.finished) == len(state.ranks):
            self._finalize(state, task, output)
            return
        ops = []
        if output:
            ops.append(_append("output", output.encode()))
        entry = self._task_exit(state, task)
        if entry:
            ops.append(_append("exec.eventlog", entry))
        if ops:
            self._commit_ns(state, ops)

    def _commit_ns(self, state: LaunchState, ops: list[dict]) -> None:
        try:
            self.broker.kvs.commit_nowait(state.ns, ops)
        except FluxError as exc:
            self.broker.log(3, f"job-exec: job {state.job.id}: guest KVS: {exc.strerror}")

    # ============================================================== finish
    def _finalize(self, state: LaunchState, task: dict | None = None,
                  output: str | None = None) -> None:
        """Every shell finished: one commit of the last events (first task exit,
        output, `complete`, `done`), then `finish`, then the namespace is moved."""
        if state.finalizing:
            return
        state.finalizing = True
        if state.exit_timer is not None:
            state.exit_timer.cancel()
            state.exit_timer = None
        for s in state.streams.values():
            s.cancel()
        state.streams.clear()
        status = max(state.finished.values(), default=0)
        now = time.time()
        ops = []
        if output:
            ops.append(_append("output", output.encode()))
        ops.append(_append("exec.eventlog", self._task_exit(state, task)
                           + _entry("complete", {"status": status}, now) + _entry("done", None, now)))
        self._commit_ns(state, ops)
        self.exec.finished(state.job, status)
        # the guest namespace becomes a directory of the primary namespace (SPEC 5.3)
        kvs = self.broker.kvs
        try:
            self._watch(kvs.copy_nowait(state.ns, ".", "primary", state.guest), state, "copying")
            self._watch(kvs.namespace_remove_nowait(state.ns), state, "removing")
        except FluxError as exc:
            self.broker.log(3, f"job-exec: job {state.job.id}: moving the guest namespace "
                               f"to {state.guest}: {exc.strerror}")
        self.exec.released(state.job)

    def _watch(self, fut: asyncio.Future, state: LaunchState, what: str) -> None:
        """Log a guest namespace step that fails when it reaches the disk."""

        def done(f: asyncio.Future) -> None:
            if not f.cancelled() and f.exception() is not None:
                exc = f.exception()
                self.broker.log(3, f"job-exec: job {state.job.id}: {what} namespace "
                                   f"{state.ns}: {getattr(exc, 'strerror', exc)}")

        fut.add_done_callback(done)

    # ================================================================ kill
    async def kill(self, job: ExecJob, signum: int) -> None:
        state = job.handle
        if not isinstance(state, LaunchState) or state.finalizing:
            return
        if not state.sent:
            state.pending_kill = state.pending_kill or signum
            return
        if signum in (15, 9) and len(state.started) < len(state.ranks):
            state.stopped = True
        self._signal(state, signum)

    def _signal(self, state: LaunchState, signum: int) -> None:
        for rank in state.ranks:
            if rank not in state.finished:
                self.broker.send_internal_noresponse("job-shell.kill",
                                                     {"id": state.job.id, "signum": signum},
                                                     nodeid=rank)
