"""The `job-info` service (RFC 41; SPEC 5.3) on rank 0.

For speed the primary eventlog of a job the job manager holds in memory is served from
there (it is what the job manager writes to the KVS, and may even be a batch ahead of
it); anything else under `job.<dothex>` comes from the KVS, R too: the job manager keeps
R without its `scheduling` key (the JGF a child instance reads), and the eventlog of an
inactive job only in the KVS. Only the
instance owner and the job's owner may read a job (EPERM otherwise).
"""

from __future__ import annotations

import copy
import errno
from typing import Any

import orjson
from flux.core.broker.service import NOREPLY, Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_kvs
from flux.core.job_info.watch import GuestWatch, KVSWatch, MainWatch, Watch
from flux.core.job_manager import eventlog
from flux.core.message import ROLE_OWNER

JSON_DECODE = 1
CURRENT = 2
LOOKUP_FLAGS = JSON_DECODE | CURRENT
UPDATABLE = ("jobspec", "R")


class KVSJob:
    """A job known only from the KVS (e.g. not loaded by the job manager): read-only."""

    __slots__ = ("id", "userid", "eventlog", "active", "jobspec", "R")

    def __init__(self, jobid: int, userid: int, events: list, jobspec: Any, R: Any):
        self.id, self.userid, self.eventlog = jobid, userid, events
        self.active = False  # nothing is appended to it any more
        self.jobspec, self.R = jobspec, R


def apply_updates(key: str, value: Any, events: list) -> Any:
    """`value` (jobspec or R) with the job's jobspec-update / resource-update events applied."""
    value = copy.deepcopy(value)
    for e in events:
        ctx = e.get("context") or {}
        if key == "jobspec" and e.get("name") == "jobspec-update":
            for path, v in ctx.items():
                d = value
                parts = path.split(".")
                for p in parts[:-1]:
                    if not isinstance(d.get(p), dict):
                        d[p] = {}
                    d = d[p]
                d[parts[-1]] = v
        elif key == "R" and e.get("name") == "resource-update":
            ex = value.setdefault("execution", {})
            if "expiration" in ctx:
                ex["expiration"] = ctx["expiration"]
    return value


class JobInfoService(Service):
    name = "job-info"

    def __init__(self, broker):
        super().__init__(broker)
        self.jm = None
        self.by_job: dict[int, list[Any]] = {}  # jobid -> watches fed by primary events
        self.streams: dict[tuple[str, int], Any] = {}  # (sender, matchtag) -> watch

    async def start(self) -> None:
        self.jm = getattr(self.broker, "job_manager", None)
        if self.jm is None:
            self.broker.log(3, "job-info: no job manager on this broker; reading the KVS only")
            return
        self.jm.listeners.append(self.on_event)

    async def stop(self) -> None:
        if self.jm is not None and self.on_event in self.jm.listeners:
            self.jm.listeners.remove(self.on_event)

    # =============================================================== jobs
    def job_of(self, jobid: int):
        """The job manager's job (active or in the inactive cache), or None."""
        if self.jm is None:
            return None
        return self.jm.jobs.get(jobid) or self.jm.inactive.get(jobid)

    def _kvs_job(self, jobid: int) -> KVSJob | None:
        kvs = getattr(self.broker, "kvs", None)
        if kvs is None:
            return None
        d = encode_kvs(jobid)
        try:
            events = eventlog.decode(kvs.lookup_value("primary", d + ".eventlog"))
        except (FluxError, ValueError):
            return None
        if not events or events[0].get("name") != "submit":
            return None
        userid = (events[0].get("context") or {}).get("userid", -1)

        def json_at(key):
            try:
                return kvs.lookup_json("primary", f"{d}.{key}")
            except FluxError:
                return None

        return KVSJob(jobid, userid, events, json_at("jobspec"), json_at("R"))

    def _job(self, msg, jobid: int):
        job = self.job_of(jobid) or self._kvs_job(jobid)
        if job is None:
            raise FluxError(errno.ENOENT, f"job {jobid} not found")
        if not (msg.rolemask & ROLE_OWNER) and job.userid != msg.userid:
            raise FluxError(errno.EPERM, f"job {jobid} belongs to another user")
        return job

    @staticmethod
    def _id(p: dict, topic: str) -> int:
        jobid = require(p, "id", int, topic)
        if jobid < 0:
            raise FluxError(errno.EINVAL, f"{topic}: invalid job id {jobid}")
        return jobid

    # ============================================================= lookup
    def _raw(self, job, key: str) -> tuple[Any, bytes | None]:
        """(object, None) for what memory holds, else (None, bytes from the KVS)."""
        if key == "eventlog" and getattr(job, "eventlog_held", False):
            return None, job.eventlog_raw()
        # (the job manager's jobspec lacks the environment and its R the JGF: the KVS has
        # the whole ones)
        kvs = getattr(self.broker, "kvs", None)
        if kvs is None:
            raise FluxError(errno.ENOSYS, "the KVS is not loaded")
        try:
            return None, kvs.lookup_value("primary", f"{encode_kvs(job.id)}.{key}")
        except FluxError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                if key == "R" and job.R is not None:
                    return job.R, None  # granted elsewhere (a delegate), not in this KVS
                raise FluxError(errno.ENOENT, f"job {job.id}: key {key} not found") from None
            raise

    def value(self, job, key: str, flags: int) -> Any:
        obj, raw = self._raw(job, key)
        if flags & CURRENT and key in UPDATABLE:
            if obj is None:
                obj = self._decode(key, raw)
            obj = apply_updates(key, obj, job.eventlog)
        if flags & JSON_DECODE:
            return obj if obj is not None else self._decode(key, raw)
        if obj is not None:
            return orjson.dumps(obj).decode()
        return raw.decode("utf-8", "replace")

    @staticmethod
    def _decode(key: str, raw: bytes) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise FluxError(errno.EINVAL, f"{key}: value is not JSON") from None

    @method("lookup")
    def lookup(self, msg):
        p = payload_of(msg)
        jobid = self._id(p, msg.topic)
        keys = require(p, "keys", list, msg.topic)
        flags = p.get("flags", 0)
        if not isinstance(flags, int) or flags & ~LOOKUP_FLAGS:
            raise FluxError(errno.EPROTO, f"{msg.topic}: invalid flags {flags!r}")
        for k in keys:
            if not isinstance(k, str) or not k:
                raise FluxError(errno.EPROTO, f"{msg.topic}: keys must be non-empty strings")
        job = self._job(msg, jobid)
        out: dict[str, Any] = {"id": jobid}
        for k in keys:
            out[k] = self.value(job, k, flags)
        return out

    @method("update-lookup")
    def update_lookup(self, msg):
        p = payload_of(msg)
        jobid = self._id(p, msg.topic)
        key = require(p, "key", str, msg.topic)
        if key not in UPDATABLE:
            raise FluxError(errno.EINVAL, f"{msg.topic}: key must be jobspec or R, not '{key}'")
        job = self._job(msg, jobid)
        return {key: self.value(job, key, JSON_DECODE | CURRENT)}

    # ============================================================ streams
    def _register(self, w) -> None:
        self.streams[w.key] = w
        self.by_job.setdefault(w.jobid, []).append(w)

    def forget(self, w) -> None:
        if self.streams.get(w.key) is w:
            del self.streams[w.key]
        ws = self.by_job.get(w.jobid)
        if ws is not None and w in ws:
            ws.remove(w)
            if not ws:
                del self.by_job[w.jobid]

    @method("eventlog-watch", streaming=True)
    def eventlog_watch(self, msg):
        p = payload_of(msg)
        jobid = self._id(p, msg.topic)
        path = require(p, "path", str, msg.topic)
        flags = p.get("flags", 0)
        if not isinstance(flags, int) or flags & ~1:
            raise FluxError(errno.EPROTO, f"{msg.topic}: invalid flags {flags!r}")
        if not path or path.startswith(".") or path.endswith("."):
            raise FluxError(errno.EINVAL, f"{msg.topic}: invalid path '{path}'")
        job = self._job(msg, jobid)
        if path == "eventlog":
            cls = MainWatch
        elif path.startswith("guest."):
            cls = GuestWatch
        else:
            cls = KVSWatch
        w = cls(self, msg, jobid, path, flags)
        self._register(w)
        w.start(job)
        return NOREPLY

    @method("update-watch", streaming=True)
    def update_watch(self, msg):
        p = payload_of(msg)
        jobid = self._id(p, msg.topic)
        key = require(p, "key", str, msg.topic)
        if key not in UPDATABLE:
            raise FluxError(errno.EINVAL, f"{msg.topic}: key must be jobspec or R, not '{key}'")
        job = self._job(msg, jobid)
        w = UpdateWatch(self, msg, jobid, key, 0)
        self._register(w)
        w.start(job)
        return NOREPLY

    def _cancel(self, msg) -> None:
        tag = payload_of(msg).get("matchtag")
        w = self.streams.get((msg.sender, tag))
        if w is not None:
            w.finish()

    @method("eventlog-watch-cancel")
    def eventlog_watch_cancel(self, msg):
        self._cancel(msg)
        return NOREPLY

    @method("update-watch-cancel")
    def update_watch_cancel(self, msg):
        self._cancel(msg)
        return NOREPLY

    @method("cancel")
    def cancel(self, msg):
        """Generic `<service>.cancel {matchtag}` (what the SDK's RPC.cancel() sends)."""
        self._cancel(msg)
        return NOREPLY

    def disconnect(self, sender: str) -> None:
        for key, w in list(self.streams.items()):
            if key[0] == sender:
                w.stop()

    def on_event(self, job, e: dict) -> None:
        """JobManager listener; never raises (it runs inside the job manager's post())."""
        if job is None:
            return
        ws = self.by_job.get(job.id)
        if not ws:
            return
        for w in list(ws):
            try:
                w.event(job, e)
            except Exception as exc:  # noqa: BLE001 - one bad stream must not stop jobs
                self.broker.log_exception("job-info: watch failed", exc)
                w.finish(errno.EIO, "job-info internal error")


class UpdateWatch(Watch):
    """`update-watch`: the current jobspec or R now, then again after each update."""

    def start(self, job) -> None:
        if getattr(job, self.path, None) is not None:
            self._send(job)
        if not job.active:
            self.finish()

    def _send(self, job) -> None:
        try:  # the whole value (the job manager's copy lacks parts), updated
            value = self.svc.value(job, self.path, JSON_DECODE | CURRENT)
        except FluxError as exc:
            self.finish(exc.errno, exc.strerror)
            return
        if not self.done:
            self.svc.respond(self.msg, {self.path: value})

    def event(self, job, e: dict) -> None:
        name = e["name"]
        if (self.path == "jobspec" and name == "jobspec-update") or (
                self.path == "R" and name in ("alloc", "resource-update")):
            if getattr(job, self.path, None) is not None:
                self._send(job)
        elif name == "clean":
            self.finish()


__all__ = ["JobInfoService", "Watch", "apply_updates"]
