"""Services every broker runs: event, service, broker, state-machine, overlay."""

from __future__ import annotations

import asyncio
import base64
import errno
import time

from flux.core.broker.broker import ClientService
from flux.core.broker.service import Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.message import ROLE_OWNER, Message


class EventService(Service):
    name = "event"

    def topics(self):
        t = ["event.subscribe", "event.unsubscribe"]
        if self.broker.rank == 0:
            t.append("event.publish")
        return t

    def _client(self, msg):
        c = self.broker.clients.get(msg.sender) if len(msg.route) == 1 else None
        if c is None:
            raise FluxError(errno.EPROTO, f"{msg.topic} is only for local clients")
        return c

    @method("subscribe")
    def subscribe(self, msg):
        topic = require(payload_of(msg), "topic", str, msg.topic)
        self._client(msg).subscriptions.append(topic)
        return {}

    @method("unsubscribe")
    def unsubscribe(self, msg):
        topic = require(payload_of(msg), "topic", str, msg.topic)
        subs = self._client(msg).subscriptions
        if topic in subs:
            subs.remove(topic)
        return {}

    @method("publish")
    def publish(self, msg):
        p = payload_of(msg)
        topic = require(p, "topic", str, msg.topic)
        if not topic:
            raise FluxError(errno.EINVAL, "event.publish: topic must not be empty")
        flags = p.get("flags", 0)
        if not isinstance(flags, int):
            raise FluxError(errno.EPROTO, "event.publish: flags must be an integer")
        payload = p.get("payload")
        if isinstance(payload, str) and p.get("encoding") == "base64":
            payload = base64.b64decode(payload)
        ev = Message.event(topic, payload, flags=flags & 0x20)
        ev.userid, ev.rolemask = msg.userid, msg.rolemask
        self.broker.distribute_event(ev)
        return {"seq": ev.seq}


class ServiceRegistry(Service):
    """`service.add` / `service.remove`: clients offer services by name."""

    name = "service"

    def _check(self, msg, name: str) -> None:
        if not name or "." in name:
            raise FluxError(errno.EINVAL, f"invalid service name '{name}'")
        if not (msg.rolemask & ROLE_OWNER) and not name.startswith(f"{msg.userid}-"):
            raise FluxError(errno.EPERM, f"guests may only register services named '{msg.userid}-*'")
        if len(msg.route) != 1 or msg.sender not in self.broker.clients:
            raise FluxError(errno.EPROTO, "service.add is only for local clients")

    @method("add")
    def add(self, msg):
        name = require(payload_of(msg), "service", str, msg.topic)
        self._check(msg, name)
        self.broker.register(name, ClientService(self.broker, name, msg.sender))
        self.broker.clients[msg.sender].provides.add(name)
        return {}

    @method("remove")
    def remove(self, msg):
        name = require(payload_of(msg), "service", str, msg.topic)
        h = self.broker.services.get(name)
        if not isinstance(h, ClientService) or h.client_id != msg.sender:
            raise FluxError(errno.ENOENT, f"service {name} is not registered by this client")
        self.broker.unregister(name)
        c = self.broker.clients.get(msg.sender)
        if c is not None:
            c.provides.discard(name)
        return {}


class BrokerService(Service):
    name = "broker"

    @method("ping")
    def ping(self, msg):
        p = payload_of(msg)
        p["route"] = "!".join(msg.route)
        p["rank"] = self.broker.rank
        return p

    @method("shutdown", owner_only=True)
    def shutdown(self, msg):
        if self.broker.rank != 0:
            raise FluxError(errno.EINVAL, "broker.shutdown must be sent to rank 0")
        rc = payload_of(msg).get("exitcode", 0)
        if isinstance(rc, bool) or not isinstance(rc, int) or not 0 <= rc <= 255:
            raise FluxError(errno.EPROTO, "broker.shutdown: exitcode must be an integer 0-255")
        b = self.broker
        if b.initial_proc is not None and b.initial_proc.returncode is None:
            b.initial_proc.terminate()
        else:
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(b.shutdown(rc)))
        return {}

    @method("info")
    def info(self, msg):
        b = self.broker
        return {"rank": b.rank, "size": b.size, "state": b.state,
                "uptime": time.time() - b.started_at}


class StateMachine(Service):
    name = "state-machine"

    @method("get")
    def get(self, msg):
        return {"state": self.broker.state}

    @method("wait")
    async def wait(self, msg):
        b = self.broker
        if b.overlay is not None:
            await b.overlay.subtree_ready.wait()
        started = getattr(b, "started", None)
        if started is not None:
            await started.wait()
        return {"state": b.state}


class OverlayService(Service):
    name = "overlay"

    @method("health")
    def health(self, msg):
        b = self.broker
        if b.overlay is None:
            return {"rank": b.rank, "status": "full", "children": []}
        h = b.overlay.health()
        h["hostname"] = b.attrs.get("hostname", "")
        return h

    @method("topology")
    def topology(self, msg):
        b = self.broker
        rank = payload_of(msg).get("rank", b.rank)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < b.size:
            # (a negative rank made the descendants walk loop forever)
            raise FluxError(errno.EPROTO if not isinstance(rank, int) else errno.EINVAL,
                            f"overlay.topology: rank must be an integer 0-{b.size - 1}")

        def node(r):
            return {"rank": r, "size": 1 + len(b.topo.descendants(r)),
                    "children": [node(c) for c in b.topo.children(r)]}

        return node(rank)


class ConfigService(Service):
    """`config.get`: the instance configuration this broker was started with
    (`flux start --conf`, `-c DIR`), as flux-core's `flux config get` reads it."""

    name = "config"

    @method("get")
    def get(self, msg):
        return self.broker.conf
