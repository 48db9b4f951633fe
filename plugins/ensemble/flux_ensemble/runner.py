"""A leaf of an ensemble: the jobs its parent sends become jobs here.

They enter the job manager directly (the root's ingest already verified and
validated them; its jobspec, with what ingest added, is what comes down), marked
`attributes.system.ensemble.key` with their key on the link, so a job manager
listener can send their events up from the very first. The parent needs only what
changes its copy's state, and what users wait for: alloc (with R), start, finish,
clean, exceptions and memos (release and free concern the leaf's resources; the
parent's copy holds none). A real job's `finish` waits for its `release`, when exec has
copied the job's exec eventlog and output to `job.<id>.guest`: they go up with it.
"""

from __future__ import annotations

import asyncio
import errno
import time

import orjson
from flux.core.errors import FluxError
from flux.core.job.fluid import encode_kvs
from flux.core.security.sign import wrap_none

# release and free are about the leaf's own resources: the parent's copy holds none
UP = frozenset(("alloc", "start", "finish", "release", "clean", "exception", "memo"))
GUEST_KEYS = ("exec.eventlog", "output", "input")


class Runner:
    def __init__(self, svc):
        self.svc = svc
        self.broker = svc.broker
        self.jm = svc.broker.job_manager
        self.keys: dict[int, int] = {}  # our job id -> its key on the parent link
        self.by_key: dict[int, int] = {}
        self.test: set[int] = set()  # test-exec jobs: no output to copy
        self.held: dict[int, dict | None] = {}  # finish contexts waiting for release
        self.stats = {"ran": 0, "t_last": None}
        self.jm.listeners.append(self.on_event)

    async def submit(self, items: list[dict]) -> None:
        results = await asyncio.gather(*(self._submit_one(it) for it in items),
                                       return_exceptions=True)
        up = self.svc.upstream
        for it, r in zip(items, results, strict=True):
            if isinstance(r, BaseException):
                note = r.strerror if isinstance(r, FluxError) else f"{type(r).__name__}: {r}"
                up.send(it.get("key"), "exception", {"type": "ensemble", "severity": 0,
                                                     "note": f"refused by the leaf instance: {note}"})
                up.send(it.get("key"), "clean", None)

    async def _submit_one(self, it: dict):
        key = it["key"]
        jobspec = it["jobspec"]
        if not isinstance(jobspec, dict):
            raise FluxError(errno.EPROTO, "forwarded job has no jobspec")
        attrs_ = jobspec.setdefault("attributes", {})
        system = attrs_.setdefault("system", {})
        if it.get("env") is not None:
            system["environment"] = it["env"]
        system.pop("dependencies", None)  # met in the instance it was submitted to
        J = it.get("J")
        if J is None:  # the owner's: remade from the jobspec the parent accepted
            J = wrap_none(orjson.dumps(jobspec), it["userid"])
        system["ensemble"] = {"key": key, "origin": it.get("origin")}
        return await self.jm.submit(jobspec, J, it["userid"], it.get("urgency", 16),
                                    it.get("flags", 0))

    def cancel(self, key: int, ctx: dict) -> None:
        job = self.jm.jobs.get(self.by_key.get(key, -1))
        if job is not None and job.active:
            c = {"type": ctx.get("type", "cancel"), "severity": 0,
                 "note": ctx.get("note", "canceled in the parent instance")}
            if "userid" in ctx:
                c["userid"] = ctx["userid"]
            self.jm.post(job, "exception", c)

    def kill(self, key: int, signum: int) -> None:
        jobid = self.by_key.get(key)
        if jobid is not None:
            self.broker.send_internal_noresponse("job-manager.kill", {"id": jobid, "signum": signum})

    # ------------------------------------------------------------ events
    def on_event(self, job, e: dict) -> None:
        if job is None:
            return
        name = e["name"]
        jobid = job.id
        if name == "submit":
            ens = job.system("ensemble")
            if isinstance(ens, dict) and "key" in ens:
                self.keys[jobid] = ens["key"]
                self.by_key[ens["key"]] = jobid
                ex = job.system("exec")
                if isinstance(ex, dict) and "test" in ex:
                    self.test.add(jobid)
            return
        if name not in UP:
            return
        key = self.keys.get(jobid)
        if key is None:
            return
        up = self.svc.upstream
        ctx = e.get("context")
        if name == "alloc":
            up.send(key, name, ctx, {"R": job.R} if job.R is not None else None)
        elif name == "finish":
            self.held[jobid] = ctx  # goes up with release, and the output
        elif name == "release":
            if jobid in self.held:
                up.send(key, "finish", self.held.pop(jobid), self._guest(jobid))
        elif name == "clean":
            if jobid in self.held:  # no release came (never ran)
                up.send(key, "finish", self.held.pop(jobid))
            del self.keys[jobid]
            self.by_key.pop(key, None)
            self.test.discard(jobid)
            self.stats["ran"] += 1
            self.stats["t_last"] = time.time()
            up.send(key, name, ctx)
        else:
            up.send(key, name, ctx)

    def _guest(self, jobid: int) -> dict | None:
        if jobid in self.test:
            return None
        kvs = self.broker.kvs
        d = encode_kvs(jobid) + ".guest."
        guest = {}
        for k in GUEST_KEYS:
            try:
                guest[k] = kvs.lookup_value("primary", d + k).decode("utf-8", "replace")
            except FluxError:
                continue
        return {"guest": guest} if guest else None
