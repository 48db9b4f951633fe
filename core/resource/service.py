"""The `resource` service: the instance's inventory (RFC 28 acquisition, SPEC 7.2).

Rank 0 builds R from config (`[[resource.config]]` or `resource.path`), or from
what every broker discovers on its node, stores it as `resource.R` in the KVS,
and streams it to the scheduler through `resource.acquire`. Every rank answers
`resource.discover` with its local hardware.
"""

from __future__ import annotations

import asyncio
import errno
import json

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
        self.ready = asyncio.Event()
        self.acquirers: dict[int, object] = {}
        self.drained: dict[int, str] = {}  # rank -> reason
        self.error: str | None = None
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
                R = ResourceSet.from_config(conf["config"], hosts if len(hosts) == b.size else None)
            elif b.attrs.get("resource.R"):  # handed down by a parent instance
                R = ResourceSet.from_dict(json.loads(b.attrs["resource.R"]))
            else:
                R = await self._gather(hosts)
        except (RError, OSError, ValueError) as exc:
            self.error = f"resource inventory: {exc}"
            b.log(2, self.error)
            R = ResourceSet()
        exclude = conf.get("exclude")
        if exclude:
            try:
                R = R.select_ranks(set(R.ranks) - set(idset.decode(str(exclude))))
            except ValueError as exc:
                b.log(3, f"resource.exclude: {exc}")
        self.R = R
        if getattr(b, "kvs", None) is not None:
            import base64

            data = json.dumps(R.to_dict()).encode()
            await b.kvs.commit_ops("primary", [{"key": "resource.R", "flags": 0, "dirent": {
                "ver": 1, "type": "val", "data": base64.b64encode(data).decode()}}])
        b.log(6, f"resource: {R.nnodes} nodes, {R.ncores} cores, {R.ngpus} gpus")
        self.ready.set()

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
        self.respond(msg, {"resources": self.R.to_dict(), "up": idset.encode(self.up_ranks())})
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
                "error": self.error}

    @method("drain", owner_only=True)
    async def drain(self, msg):
        await self.ready.wait()
        p = payload_of(msg)
        targets = self._targets(p.get("targets", ""))
        reason = str(p.get("reason", ""))
        for r in targets:
            self.drained[r] = reason
        self.notify({"down": idset.encode(targets)})
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
        self.notify({"up": idset.encode(targets)})
        return {}

    def _targets(self, spec: str) -> list[int]:
        R = self.R
        try:
            ranks = idset.decode(spec)
        except ValueError:
            ranks = None
        if ranks is None:  # not an idset: a hostlist
            try:
                names = set(hostlist.decode(spec))
            except ValueError as exc:
                raise FluxError(errno.EINVAL, f"invalid targets '{spec}': {exc}") from None
            ranks = [r for r, rk in R.ranks.items() if rk.host in names]
            if len(ranks) != len(names):
                raise FluxError(errno.ENOENT, f"unknown host in '{spec}'")
        bad = [r for r in ranks if r not in R.ranks]
        if bad:
            raise FluxError(errno.ENOENT, f"rank {bad[0]} is not in the instance's resources")
        return ranks

    def disconnect(self, sender: str) -> None:
        for k, m in list(self.acquirers.items()):
            if m.sender == sender:
                del self.acquirers[k]
