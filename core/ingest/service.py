"""The `job-ingest` service: verify, frobnicate and validate a job, then hand it to
the job manager, answering with its id only once the job is stored (SPEC 7.1)."""

from __future__ import annotations

import asyncio
import errno
import inspect

import orjson
from flux.core.broker.service import Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.message import ROLE_OWNER
from flux.core.plugins import call_each, load_group
from flux.core.security.sign import SignError, Verifier

FLAG_DEBUG, FLAG_WAITABLE, FLAG_NOVALIDATE = 2, 4, 8
KNOWN_FLAGS = FLAG_DEBUG | FLAG_WAITABLE | FLAG_NOVALIDATE


class IngestService(Service):
    name = "job-ingest"

    def __init__(self, broker):
        super().__init__(broker)
        disabled = set(broker.conf.get("ingest", {}).get("disable", []))
        self.pm, self.records = load_group("flux.ingest", disabled=disabled)
        for r in self.records:
            if not r.loaded and r.error != "disabled by config":
                broker.log(3, f"ingest plugin {r.name} ({r.distribution}) failed to load: {r.error}")
        self.conf = broker.conf
        self.verifier = Verifier(broker.conf)
        # batches ingested at once: a client sends all its batches together, and each job
        # in flight holds its J, jobspec and KVS writes; two keep the KVS commits large
        # while the broker's peak memory (which it keeps, fragmented) stays low
        self._batches = asyncio.Semaphore(2)

    def register(self, plugin, name: str) -> None:
        """Add `flux.ingest` hooks at run time: a broker plugin whose config enables
        them registers them here, so instances without that config pay nothing."""
        self.pm.register(plugin, name=name)

    def unregister(self, name: str) -> bool:
        """Remove an ingest plugin by name (one that another replaces at run time);
        False if there is none of that name."""
        if self.pm.get_plugin(name) is None:
            return False
        self.pm.unregister(name=name)
        return True

    async def _run_hooks(self, hook: str, **kw) -> None:
        for name, result, exc in call_each(self.pm, hook, **kw):
            if exc is None and inspect.isawaitable(result):
                try:
                    await result
                except Exception as e:  # noqa: BLE001
                    exc = e
            if exc is not None:
                if isinstance(exc, FluxError):
                    raise FluxError(exc.errno, exc.strerror)
                if isinstance(exc, ValueError):
                    raise FluxError(errno.EINVAL, str(exc))
                self.broker.log_exception(f"ingest plugin {name}: {hook}", exc)
                raise FluxError(errno.EINVAL, f"ingest plugin {name} failed: {exc!r}")

    async def ingest_one(self, msg, p: dict) -> int:
        J = require(p, "J", str, msg.topic)
        urgency = p.get("urgency", 16)
        if not isinstance(urgency, int) or isinstance(urgency, bool) or not 0 <= urgency <= 31:
            raise FluxError(errno.EINVAL, f"urgency must be an integer 0-31, not {urgency!r}")
        owner = bool(msg.rolemask & ROLE_OWNER)
        if urgency > 16 and not owner:
            raise FluxError(errno.EPERM, "only the instance owner can submit with urgency above 16")
        flags = p.get("flags", 0)
        if not isinstance(flags, int) or flags & ~KNOWN_FLAGS:
            raise FluxError(errno.EINVAL, f"invalid submit flags {flags!r}")
        if flags & (FLAG_WAITABLE | FLAG_NOVALIDATE) and not owner:
            raise FluxError(errno.EPERM, "waitable and novalidate flags are for the instance owner")
        try:
            payload = self.verifier.verify(J, msg.userid, owner)
        except SignError as exc:
            raise FluxError(errno.EPERM, str(exc)) from None
        try:
            jobspec = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise FluxError(errno.EINVAL, f"jobspec is not valid JSON: {exc}") from None
        if not isinstance(jobspec, dict):
            raise FluxError(errno.EINVAL, "jobspec must be a JSON object")
        kw = {"jobspec": jobspec, "userid": msg.userid, "urgency": urgency, "flags": flags,
              "config": self.conf, "instance": self.broker}
        await self._run_hooks("ingest_frobnicate", **kw)
        if not flags & FLAG_NOVALIDATE:
            await self._run_hooks("ingest_validate", **kw)
        job = await self.broker.job_manager.submit(jobspec, J, msg.userid, urgency, flags)
        return job.id

    @method("submit")
    async def submit(self, msg):
        p = payload_of(msg)
        if "jobs" in p:  # batch form: {"jobs": [{J, urgency, flags}, ...]} -> ids and errors
            jobs = require(p, "jobs", list, msg.topic)
            if not all(isinstance(item, dict) for item in jobs):
                raise FluxError(errno.EPROTO, "job-ingest.submit: jobs must be objects")
            # concurrently, so the whole batch is stored in one KVS commit
            async with self._batches:
                results = await asyncio.gather(*(self.ingest_one(msg, item) for item in jobs),
                                               return_exceptions=True)
            out = []
            for r in results:
                if isinstance(r, FluxError):
                    out.append({"errnum": r.errno, "errstr": r.strerror})
                elif isinstance(r, BaseException):
                    raise r
                else:
                    out.append({"id": r})
            return {"jobs": out}
        return {"id": await self.ingest_one(msg, p)}
