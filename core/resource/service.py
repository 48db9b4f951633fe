"""The `resource` service: the instance's inventory (RFC 28 acquisition, SPEC 7.2).

Rank 0 builds R from config (`[[resource.config]]` or `resource.path`), or from
what every broker discovers on its node, stores it as `resource.R` in the KVS,
and streams it to the scheduler through `resource.acquire`. Every rank answers
`resource.discover` with its local hardware.

Run-time changes (owner only), each sent to the scheduler as an acquire response:
- `resource.drain {targets, reason?, mode?}` -> `{"down": ranks}`. A node already
  drained is an EEXIST error unless mode is `overwrite` (new reason) or `update`
  (drain only those not drained yet).
- `resource.undrain {targets}` -> `{"up": ranks}`.
- `resource.add {R}` -> `{"resources": R, "up": ranks}` (our extension of RFC 28: a
  later response may carry resources that grow the instance). The new ranks and hosts
  must not be in the instance already.
- `resource.remove {targets}` -> `{"shrink": ranks, "down": ranks}`. Refused (EBUSY)
  while a job holds any of those resources: the scheduler is asked, after the targets
  were taken out of scheduling, so no job can be placed on them in between. Drain the
  nodes, wait for their jobs to end, then remove them.
The drain state is kept with the time and reason (`resource.status`).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import time

from flux.core.broker.service import NOREPLY, Service, method, payload_of
from flux.core.errors import FluxError
from flux.core.resource.discover import local_resources
from flux.core.resource.rv1 import Rank, RError, ResourceSet
from flux.core.util import hostlist, idset


class ResourceService(Service):
    name = "resource"

    def __init__(self, broker):
        super().__init__(broker)
        self.R: ResourceSet | None = None
        self.excluded = ResourceSet()
        self.ready = asyncio.Event()
        self.acquirers: dict[int, object] = {}
        self.drained: dict[int, str] = {}  # rank -> reason
        self.drain_time: dict[int, float] = {}  # rank -> when it was drained
        self.error: str | None = None
        self._lock = asyncio.Lock()  # one add/remove at a time
        broker.resource = self

    @method("discover")
    def discover(self, msg):
        return local_resources()

    async def build(self) -> None:
        """Rank 0: assemble the inventory once the overlay is up."""
        b = self.broker
        conf = b.conf.get("resource", {})
        try:
            hosts = hostlist.decode(b.attrs.get("hostlist", "")) if b.attrs.get("hostlist") else []
            if conf.get("path"):
                with open(conf["path"]) as f:
                    R = ResourceSet.from_dict(json.load(f))
            elif conf.get("config"):
                R = ResourceSet.from_config(conf["config"], self._rank_hosts(conf["config"], hosts))
            elif b.attrs.get("resource.R"):  # handed down by a parent instance
                R = ResourceSet.from_dict(json.loads(b.attrs["resource.R"]))
            elif b.attrs.get("jobid") and b.attrs.get("parent-uri"):  # a job's instance
                from flux.core.resource.parent import fetch_R

                R = ResourceSet.from_dict(await fetch_R(b))
            else:
                R = await self._gather(hosts)
        except (RError, OSError, ValueError, KeyError) as exc:
            self.error = f"resource inventory: {exc}"
            b.log(2, self.error)
            R = ResourceSet()
        exclude = conf.get("exclude")
        if exclude:
            try:
                ex = self._targets_in(R, str(exclude))
                self.excluded = R.select_ranks(ex)
                R = R.select_ranks(set(R.ranks) - set(ex))
            except (ValueError, FluxError) as exc:
                b.log(3, f"resource.exclude: {exc}")
        self.R = R
        await self._store()
        b.log(6, f"resource: {R.nnodes} nodes, {R.ncores} cores, {R.ngpus} gpus")
        self.ready.set()

    def _rank_hosts(self, entries, hosts: list[str]) -> list[str] | None:
        """Hosts by rank when the config describes this instance's brokers; None (ranks in
        config order) when it names none of them: a modeled cluster (tests, benchmarks)."""
        if len(hosts) != self.broker.size:
            return None
        named: set[str] = set()
        for e in entries if isinstance(entries, list) else []:
            try:
                named.update(hostlist.decode(str(e.get("hosts", ""))) if isinstance(e, dict) else [])
            except ValueError:
                return hosts  # from_config names the bad entry
        if not named & set(hosts):
            self.broker.log(6, "resource: resource.config names none of the brokers' hosts: "
                               "ranks follow the config (a modeled cluster)")
            return None
        return hosts

    async def _store(self) -> None:
        b = self.broker
        if getattr(b, "kvs", None) is not None:
            data = json.dumps(self.R.to_dict(with_scheduling=True)).encode()
            await b.kvs.commit_ops("primary", [{"key": "resource.R", "flags": 0, "dirent": {
                "ver": 1, "type": "val", "data": base64.b64encode(data).decode()}}])

    async def _gather(self, hosts: list[str]) -> ResourceSet:
        b = self.broker
        replies = await asyncio.gather(*(b.rpc("resource.discover", nodeid=r).get()
                                         for r in range(b.size)), return_exceptions=True)
        ranks = {}
        for r, rep in enumerate(replies):
            if isinstance(rep, BaseException):
                b.log(3, f"resource: rank {r} did not report its resources: {rep}")
                continue
            host = hosts[r] if r < len(hosts) else rep["hostname"]
            ranks[r] = Rank(r, host, set(rep["cores"]), set(rep["gpus"]))
        return ResourceSet(ranks)

    def up_ranks(self) -> list[int]:
        return sorted(r for r in (self.R.ranks if self.R else {}) if r not in self.drained)

    @method("acquire", streaming=True, owner_only=True)
    async def acquire(self, msg):
        await self.ready.wait()
        self.respond(msg, {"resources": self.R.to_dict(with_scheduling=True),
                           "up": idset.encode(self.up_ranks())})
        self.acquirers[id(msg)] = msg
        return NOREPLY

    def notify(self, update: dict) -> None:
        for m in list(self.acquirers.values()):
            self.respond(m, update)

    @method("status")
    async def status(self, msg):
        await self.ready.wait()
        R = self.R
        down = R.select_ranks(self.drained)
        return {"R": R.to_dict(), "down": down.to_dict(),
                "drained": {str(r): reason for r, reason in self.drained.items()},
                "drain_info": {str(r): {"reason": reason, "timestamp": self.drain_time.get(r, 0.0)}
                               for r, reason in self.drained.items()},
                "exclude": self.excluded.to_dict(),
                "error": self.error}

    @method("drain", owner_only=True)
    async def drain(self, msg):
        await self.ready.wait()
        p = payload_of(msg)
        targets = self._targets(p.get("targets", ""))
        reason = p.get("reason", "")
        if not isinstance(reason, str):
            raise FluxError(errno.EPROTO, "resource.drain: reason must be a string")
        mode = p.get("mode")
        if mode not in (None, "overwrite", "force-overwrite", "update"):
            raise FluxError(errno.EPROTO, f"resource.drain: unknown mode '{mode}'")
        already = [r for r in targets if r in self.drained]
        if already and mode is None:
            raise FluxError(errno.EEXIST, f"{self._names(already)} already drained")
        now = time.time()
        new = [r for r in targets if r not in self.drained]
        for r in targets:
            if r in self.drained and mode == "update":
                continue
            self.drained[r] = reason
            self.drain_time.setdefault(r, now)
        if new:
            self.notify({"down": idset.encode(new)})
        return {}

    @method("undrain", owner_only=True)
    async def undrain(self, msg):
        await self.ready.wait()
        targets = self._targets(payload_of(msg).get("targets", ""))
        not_drained = [r for r in targets if r not in self.drained]
        if not_drained:
            raise FluxError(errno.EINVAL, f"rank {idset.encode(not_drained)} is not drained")
        for r in targets:
            del self.drained[r]
            self.drain_time.pop(r, None)
        self.notify({"up": idset.encode(targets)})
        return {}

    @method("add", owner_only=True)
    async def add(self, msg):
        await self.ready.wait()
        p = payload_of(msg)
        try:
            new = ResourceSet.from_dict(p.get("R"))
        except RError as exc:
            raise FluxError(errno.EINVAL, f"resource.add: {exc}") from None
        if not new.ranks:
            raise FluxError(errno.EINVAL, "resource.add: R names no resources")
        async with self._lock:
            dup = sorted(set(new.ranks) & (set(self.R.ranks) | set(self.excluded.ranks)))
            if dup:
                raise FluxError(errno.EEXIST, f"resource.add: rank {idset.encode(dup)} is already "
                                              f"in the instance")
            have = {rk.host for rk in self.R.ranks.values() if rk.host}
            if any(not rk.host for rk in new.ranks.values()):
                raise FluxError(errno.EINVAL, "resource.add: every added rank needs a host name "
                                              "(R execution.nodelist)")
            clash = sorted(rk.host for rk in new.ranks.values() if rk.host in have)
            if clash:
                raise FluxError(errno.EEXIST, f"resource.add: {hostlist.encode(clash)} already in the "
                                              f"instance")
            merged = self.R.union(new)
            for name, ranks in new.properties.items():
                merged.properties.setdefault(name, set()).update(ranks)
            if new.scheduling is not None and self.R.scheduling is not None:
                merged.scheduling = None  # the old JGF no longer describes the whole set
            self.R = merged
            await self._store()
            body = new.to_dict(with_scheduling=True)
            self.notify({"resources": body, "up": idset.encode(new.ranks)})
        self.broker.log(6, f"resource: added {new.hostlist()} ({new.ncores} cores, {new.ngpus} gpus)")
        return {"ranks": idset.encode(new.ranks), "nodelist": new.hostlist()}

    @method("remove", owner_only=True)
    async def remove(self, msg):
        await self.ready.wait()
        targets = self._targets(payload_of(msg).get("targets", ""))
        async with self._lock:
            # take them out of scheduling first, so nothing new lands there meanwhile
            fresh = [r for r in targets if r not in self.drained]
            if fresh:
                self.notify({"down": idset.encode(fresh)})
            try:
                busy = await self._allocated_ranks(targets)
            except BaseException:
                if fresh:
                    self.notify({"up": idset.encode(fresh)})
                raise
            if busy:
                if fresh:
                    self.notify({"up": idset.encode(fresh)})
                raise FluxError(errno.EBUSY, f"cannot remove {self._names(busy)}: running jobs hold "
                                             f"resources there (drain them, wait for the jobs to end, "
                                             f"then remove)")
            names = self._names(targets)
            keep = set(self.R.ranks) - set(targets)
            self.R = self.R.select_ranks(keep)
            self.R.scheduling = None
            for r in targets:
                self.drained.pop(r, None)
                self.drain_time.pop(r, None)
            await self._store()
            ids = idset.encode(targets)
            self.notify({"shrink": ids, "down": ids})
        self.broker.log(6, f"resource: removed {names}")
        return {}

    async def _allocated_ranks(self, targets: list[int]) -> list[int]:
        """Which of targets the scheduler has allocated to jobs (none if no scheduler)."""
        try:
            st = await self.broker.rpc("sched.resource-status")
        except FluxError as exc:
            if exc.errno == errno.ENOSYS:
                return []
            raise
        alloc = ResourceSet.from_dict(st["allocated"])
        return sorted(r for r in targets if r in alloc.ranks
                      and (alloc.ranks[r].cores or alloc.ranks[r].gpus))

    def _names(self, ranks: list[int]) -> str:
        hosts = [self.R.ranks[r].host for r in sorted(ranks) if r in self.R.ranks]
        if hosts and all(hosts):
            return hostlist.encode(hosts)
        return f"rank {idset.encode(ranks)}"

    def _targets(self, spec) -> list[int]:
        if not isinstance(spec, str) or not spec.strip():
            raise FluxError(errno.EINVAL, "no targets given (ranks or hosts)")
        return self._targets_in(self.R, spec.strip())

    @staticmethod
    def _targets_in(R: ResourceSet, spec: str) -> list[int]:
        if spec == "all":
            return sorted(R.ranks)
        try:
            ranks = idset.decode(spec)
        except ValueError:
            ranks = None
        if ranks is None:  # not an idset: a hostlist
            try:
                names = set(hostlist.decode(spec))
            except ValueError as exc:
                raise FluxError(errno.EINVAL, f"invalid targets '{spec}': {exc}") from None
            ranks = sorted(r for r, rk in R.ranks.items() if rk.host in names)
            found = {R.ranks[r].host for r in ranks}
            if found != names:
                raise FluxError(errno.ENOENT, f"unknown host {sorted(names - found)[0]} in '{spec}'")
        bad = [r for r in ranks if r not in R.ranks]
        if bad:
            raise FluxError(errno.ENOENT, f"rank {bad[0]} is not in the instance's resources")
        return ranks

    def disconnect(self, sender: str) -> None:
        for k, m in list(self.acquirers.items()):
            if m.sender == sender:
                del self.acquirers[k]
