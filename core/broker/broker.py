"""One broker: routes messages between its clients, its services and the overlay.

Routing rules (SPEC 6.1): a request with nodeid ANY goes to a local service if one
matches its topic, else upstream; a request for a rank goes down toward that rank
(or up when the rank is not below us); responses retrace the request's route;
events are sequenced by rank 0 and flow down to every rank.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from flux.core.broker.attributes import ATTR_IMMUTABLE, Attributes
from flux.core.broker.log import LOG_ERR, LOG_INFO, LogService, RingHandler, level_number
from flux.core.broker.service import Service
from flux.core.broker.topology import Topology
from flux.core.errors import FluxError
from flux.core.message import (
    FLAG_NORESPONSE,
    FLAG_PRIVATE,
    FLAG_STREAMING,
    FLAG_UPSTREAM,
    NODEID_ANY,
    NODEID_UPSTREAM,
    ROLE_LOCAL,
    ROLE_OWNER,
    Message,
)
from flux.core.util.fsd import parse_fsd

log = logging.getLogger("flux.broker")

VERSION = "0.88.0"  # the flux-core interface level we follow (SPEC snapshot)


class ClientService:
    """A service name registered by a client (`service.add`): requests go to it."""

    def __init__(self, broker: Broker, name: str, client_id: str):
        self.broker, self.name, self.client_id = broker, name, client_id

    def dispatch(self, msg: Message) -> None:
        client = self.broker.clients.get(self.client_id)
        if client is None:
            if not msg.noresponse:
                self.broker.send_response(msg.response(
                    errnum=errno.ENOSYS, errstr=f"No service matching {msg.topic} is registered"))
            return
        if not msg.noresponse:  # answered with an error should the client go away first
            client.answering[(tuple(msg.route), msg.matchtag)] = msg
        client.send(msg)


class Responses:
    """Responses delivered to an internal RPC and not yet read: the part of asyncio.Queue
    that an RPC uses (put_nowait, get, get_nowait, empty, qsize) at a tenth of its size
    (an asyncio.Queue is ~3 KB; the job manager keeps an RPC per pending job)."""

    __slots__ = ("_items", "_waiters")

    def __init__(self):
        self._items: list | None = None
        self._waiters: list[asyncio.Future] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            w = waiters.pop(0)
            if not w.done():
                w.set_result(None)
                break

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self) -> Any:
        while not self._items:
            w = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(w)
            try:
                await w
            except BaseException:
                if w in self._waiters:
                    self._waiters.remove(w)
                elif self._items:
                    self._wake()  # woken but cancelled: pass the wakeup on
                raise
        return self._items.pop(0)


class InternalRPC:
    """An RPC issued by code inside the broker. Await it for the first response, or
    iterate it (`async for`) for a stream that ends with ENODATA."""

    __slots__ = ("broker", "matchtag", "topic", "streaming", "queue", "done", "callback",
                 "args", "consumed")

    def __init__(self, broker: Broker, matchtag: int, topic: str, streaming: bool):
        self.broker = broker
        self.matchtag = matchtag
        self.topic = topic
        self.streaming = streaming
        self.queue = Responses()
        self.done = False
        self.callback: Callable[..., None] | None = None
        self.args: tuple = ()
        self.consumed = False  # free for the caller's use (e.g. "handled the last response")

    def deliver(self, msg: Message) -> None:
        if self.callback is not None:
            # on the next loop turn, as an awaiting task would see it: the responder
            # (e.g. a scheduler inside its pass) is not re-entered by the reader
            asyncio.get_running_loop().call_soon(self.callback, *self.args, msg)
        else:
            self.queue.put_nowait(msg)
        if not self.streaming or msg.errnum:
            self.done = True
            self.broker.internal_pending.pop(self.matchtag, None)

    def then(self, callback: Callable[..., None], *args: Any) -> None:
        """Call `callback(*args, msg)` with each response (errors included: check
        msg.errnum) instead of queueing them for get(): no task per outstanding request."""
        self.callback = callback
        self.args = args
        loop = asyncio.get_running_loop()
        while not self.queue.empty():
            loop.call_soon(callback, *args, self.queue.get_nowait())

    async def get_msg(self) -> Message:
        msg = await self.queue.get()
        if msg.errnum:
            raise FluxError(msg.errnum, msg.errstr() or os.strerror(msg.errnum))
        return msg

    async def get(self) -> Any:
        return (await self.get_msg()).data()

    def __await__(self):
        return self.get().__await__()

    def __aiter__(self):
        return self

    async def __anext__(self):
        msg = await self.queue.get()
        if msg.errnum == errno.ENODATA:
            raise StopAsyncIteration
        if msg.errnum:
            raise FluxError(msg.errnum, msg.errstr() or os.strerror(msg.errnum))
        return msg.data()

    def cancel(self) -> None:
        self.broker.internal_pending.pop(self.matchtag, None)
        self.done = True


class Broker:
    def __init__(self, rank: int, size: int, attrs: dict[str, str] | None = None,
                 conf: dict | None = None, bootstrap: Any = None,
                 initial_program: list[str] | None = None):
        self.rank = rank
        self.size = size
        self.conf = conf or {}
        self.bootstrap = bootstrap
        self.initial_program = initial_program
        self.attrs = Attributes()
        for k, v in (attrs or {}).items():
            self.attrs.set(k, v)
        self.topo = Topology.parse(self.attrs.setdefault("tbon.topo", "kary:2"), size,
                                   getattr(bootstrap, "parents", None))
        self.internal_id = f"@{rank}"
        self.services: dict[str, Any] = {}
        self.service_objects: list[Service] = []
        self.clients: dict = {}
        self.internal_pending: dict[int, InternalRPC] = {}
        self.internal_subs: list[tuple[str, Callable[[Message], None]]] = []
        self._matchtag = 0
        self._client_seq = 0
        self.event_seq = 0
        self.state = "load"
        self.exit_code = 0
        self.shutdown_started = False
        self.done = None  # asyncio.Future, set in run()
        self.started_at = time.time()
        self.owner = int(self.attrs.setdefault("security.owner", str(os.getuid())))
        self.overlay = None
        self.connector = None
        self.plugins = None
        self.logsvc: LogService | None = None
        self.initial_proc = None

    # ------------------------------------------------------------------ ids
    def new_client_id(self) -> str:
        self._client_seq += 1
        return f"c{self.rank}.{self._client_seq}"

    def next_matchtag(self) -> int:
        self._matchtag = (self._matchtag + 1) & 0x7FFFFFFF or 1
        return self._matchtag

    # ------------------------------------------------------------- services
    def register(self, topic: str, handler: Any) -> None:
        """Route requests whose topic is `topic` (or starts with `topic.`) to handler."""
        if topic in self.services:
            raise FluxError(errno.EEXIST, f"service {topic} is already registered")
        self.services[topic] = handler

    def unregister(self, topic: str) -> None:
        self.services.pop(topic, None)

    def add_service(self, svc: Service) -> Service:
        for t in svc.topics():
            self.register(t, svc)
        self.service_objects.append(svc)
        return svc

    def remove_service(self, svc: Service) -> None:
        for t in [t for t, h in self.services.items() if h is svc]:
            del self.services[t]
        if svc in self.service_objects:
            self.service_objects.remove(svc)

    def lookup(self, topic: str) -> Any:
        h = self.services.get(topic)
        if h is not None:
            return h
        t = topic
        while True:
            i = t.rfind(".")
            if i < 0:
                return None
            t = t[:i]
            h = self.services.get(t)
            if h is not None:
                return h

    # -------------------------------------------------------------- routing
    def handle_request(self, msg: Message) -> None:
        """Route a request that arrived here (its sender's hop is already on its route)."""
        nodeid = msg.nodeid
        if nodeid == NODEID_UPSTREAM:
            # a sender that did not resolve FLUX_NODEID_UPSTREAM itself: upstream of here
            msg.flags |= FLAG_UPSTREAM
            msg.nodeid = nodeid = self.rank
        upstream = msg.flags & FLAG_UPSTREAM
        if upstream and nodeid == self.rank:
            # the sender's own broker: skip the local service, go to the parent
            if not self._forward_up(msg):
                self._enosys(msg)
            return
        if nodeid == NODEID_ANY or upstream or nodeid == self.rank:
            # (UPSTREAM above the sender's rank is routed like ANY)
            h = self.lookup(msg.topic)
            if h is not None:
                h.dispatch(msg)
            elif nodeid != self.rank and self._forward_up(msg):
                pass
            else:
                self._enosys(msg)
            return
        if nodeid >= self.size:
            self._error(msg, errno.EHOSTUNREACH, f"rank {nodeid} is not in this instance of size {self.size}")
            return
        child = self.topo.child_toward(self.rank, nodeid)
        if child is not None:
            if not self.overlay or not self.overlay.send_down(child, msg):
                self._error(msg, errno.EHOSTUNREACH, f"rank {nodeid} is unreachable (rank {child} is down)")
        elif not self._forward_up(msg):
            self._error(msg, errno.EHOSTUNREACH, f"no route to rank {nodeid}")

    def _forward_up(self, msg: Message) -> bool:
        if self.rank == 0 or self.overlay is None:
            return False
        return self.overlay.send_up(msg)

    def _enosys(self, msg: Message) -> None:
        self._error(msg, errno.ENOSYS, f"No service matching {msg.topic} is registered")

    def _error(self, msg: Message, errnum: int, text: str) -> None:
        if not msg.noresponse:
            self.send_response(msg.response(errnum=errnum, errstr=text))

    def send_response(self, msg: Message) -> None:
        """Send a response one hop back along its route."""
        if not msg.route:
            log.debug("dropping response %s with empty route", msg.topic)
            return
        hop = msg.route.pop()
        if hop == self.internal_id:
            rpc = self.internal_pending.get(msg.matchtag)
            if rpc is not None:
                rpc.deliver(msg)
            return
        client = self.clients.get(hop)
        if client is not None:
            client.send(msg)
            return
        if hop[:1].isdigit() and self.overlay is not None:
            self.overlay.send_response(int(hop), msg)
        # else: the requester went away; drop

    # -------------------------------------------------------------- events
    def publish(self, topic: str, payload: Any = None, flags: int = 0,
                userid: int | None = None, rolemask: int = ROLE_OWNER) -> None:
        """Publish an event to the whole instance (sequenced by rank 0)."""
        ev = Message.event(topic, payload, flags=flags)
        ev.userid = self.owner if userid is None else userid
        ev.rolemask = rolemask
        if self.rank == 0:
            self.distribute_event(ev)
        else:
            req = Message.request("event.publish", {"topic": topic, "flags": flags,
                                                    "payload": payload}, flags=FLAG_NORESPONSE)
            self.send_internal(req)

    def distribute_event(self, ev: Message) -> None:
        if self.rank == 0:
            self.event_seq += 1
            ev.seq = self.event_seq
        if self.overlay is not None:
            self.overlay.send_event(ev)
        topic = ev.topic
        for prefix, cb in list(self.internal_subs):
            if topic.startswith(prefix):
                try:
                    cb(ev)
                except Exception as exc:  # noqa: BLE001
                    self.log_exception(f"event callback for {topic} failed", exc)
        private = ev.flags & FLAG_PRIVATE
        for client in list(self.clients.values()):
            if client.subscribed(topic):
                if private and not (client.rolemask & ROLE_OWNER) and client.userid != ev.userid:
                    continue
                client.send(ev)

    def subscribe(self, prefix: str, cb: Callable[[Message], None]) -> None:
        self.internal_subs.append((prefix, cb))

    def unsubscribe(self, prefix: str, cb: Callable[[Message], None]) -> None:
        try:
            self.internal_subs.remove((prefix, cb))
        except ValueError:
            pass

    # ---------------------------------------------------------- internal rpc
    def send_internal(self, msg: Message) -> None:
        msg.route = [self.internal_id]
        msg.userid = self.owner
        msg.rolemask = ROLE_OWNER | ROLE_LOCAL
        self.handle_request(msg)

    def send_internal_noresponse(self, topic: str, payload: Any = None,
                                 nodeid: int = NODEID_ANY) -> None:
        """Send a request that expects no response (e.g. sched.free)."""
        self.send_internal(Message.request(topic, payload, nodeid=nodeid, flags=FLAG_NORESPONSE))

    def rpc(self, topic: str, payload: Any = None, nodeid: int = NODEID_ANY,
            flags: int = 0) -> InternalRPC:
        """Send a request from inside the broker; await the result or iterate a stream."""
        tag = self.next_matchtag()
        rpc = InternalRPC(self, tag, topic, bool(flags & FLAG_STREAMING))
        self.internal_pending[tag] = rpc
        msg = Message.request(topic, payload, nodeid=nodeid, flags=flags, matchtag=tag)
        self.send_internal(msg)
        return rpc

    # ------------------------------------------------------------- clients
    def client_connected(self, client) -> None:
        self.clients[client.id] = client

    def client_disconnected(self, client) -> None:
        self.clients.pop(client.id, None)
        for m in client.answering.values():
            self.send_response(m.response(errnum=errno.ENOSYS,
                                          errstr=f"{m.topic}: the service's provider went away"))
        client.answering.clear()
        for name in [n for n, h in self.services.items()
                     if isinstance(h, ClientService) and h.client_id == client.id]:
            del self.services[name]
        for svc, nodeid, upstream in client.used_services:
            # to every rank the client sent requests to, so remote services
            # (e.g. rexec on rank 3) drop its streams too
            m = Message.request(f"{svc}.disconnect", None, nodeid=nodeid,
                                flags=FLAG_NORESPONSE | upstream)
            m.route = [client.id]
            m.userid, m.rolemask = client.userid, client.rolemask
            try:
                self.handle_request(m)
            except Exception as exc:  # noqa: BLE001
                self.log_exception("disconnect notification failed", exc)

    # ------------------------------------------------------------- logging
    def log(self, level, message: str) -> None:
        if self.logsvc is not None:
            self.logsvc.append(level_number(level), message)

    def log_exception(self, what: str, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        self.log(LOG_ERR, f"{what}: {exc!r}")
        log.debug("%s\n%s", what, tb)

    def validate_attr(self, name: str, value: str) -> None:
        if name.startswith("log-") and name.endswith("level"):
            level_number(value)
        if name == "log-ring-size" and not (value.isdigit() and int(value) > 0):
            raise FluxError(errno.EINVAL, "log-ring-size must be a positive integer")

    # ------------------------------------------------------------ lifecycle
    def _set_attrs(self) -> None:
        a = self.attrs
        a.set("rank", self.rank, ATTR_IMMUTABLE)
        a.set("size", self.size, ATTR_IMMUTABLE)
        a.set("version", VERSION, ATTR_IMMUTABLE)
        a.set("broker.pid", os.getpid(), ATTR_IMMUTABLE)
        a.set("broker.starttime", f"{self.started_at:.6f}", ATTR_IMMUTABLE)
        a.setdefault("instance-level", "0", ATTR_IMMUTABLE)
        a.setdefault("jobid-path", "/", ATTR_IMMUTABLE)
        a.set("tbon.level", self.topo.level(self.rank), ATTR_IMMUTABLE)
        a.set("tbon.maxlevel", self.topo.maxlevel(), ATTR_IMMUTABLE)
        a.set("tbon.descendants", len(self.topo.descendants(self.rank)), ATTR_IMMUTABLE)
        a.setdefault("broker.boot-method", "single", ATTR_IMMUTABLE)
        a.setdefault("hostname", os.uname().nodename, ATTR_IMMUTABLE)
        a.setdefault("hostlist", a["hostname"], ATTR_IMMUTABLE)
        a.setdefault("broker.quorum", str(self.size))
        a.setdefault("broker.max-message-size", str(256 * 1024 * 1024))
        a.setdefault("tbon.torpid_min", "5s")
        a.setdefault("tbon.torpid_max", "30s")
        a.setdefault("heartbeat.period", "2s")
        # the enclosing instance, if this broker was started inside one (flux-core
        # takes it from FLUX_URI at startup)
        parent_uri = os.environ.get("FLUX_URI")
        if parent_uri and "parent-uri" not in a:
            a.set("parent-uri", parent_uri, ATTR_IMMUTABLE)
        for name in ("rundir", "statedir", "parent-uri", "jobid", "tbon.topo", "local-uri"):
            if name in a:
                a.setdefault(name, "", ATTR_IMMUTABLE)  # keeps the value, marks it read-only
        for name in ("heartbeat.period", "tbon.torpid_min", "tbon.torpid_max"):
            try:
                parse_fsd(a[name])
            except ValueError as exc:
                raise FluxError(errno.EINVAL, f"attribute {name}: {exc}") from None

    async def run(self) -> int:
        """Run the broker until the instance shuts down; return the exit code."""
        from flux.core.broker.local import LocalConnector
        from flux.core.broker.overlay import Overlay
        from flux.core.plugins import BrokerPlugins

        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.started = asyncio.Event()  # start-up work done (see _start_instance)
        self._set_attrs()
        self.logsvc = self.add_service(LogService(self))
        handler = RingHandler(self.logsvc)
        logging.getLogger("flux").addHandler(handler)
        logging.getLogger("flux").setLevel(logging.DEBUG if os.environ.get("FLUX_BROKER_DEBUG") else logging.INFO)
        self.state = "init"
        self.plugins = BrokerPlugins(self)
        self.plugins.load_services()
        for svc in list(self.service_objects):
            try:
                await svc.start()
            except Exception as exc:  # noqa: BLE001 - a broken service must not stop the broker
                who = getattr(svc, "plugin_name", None)
                self.log_exception(f"plugin {who}: service {svc.name} failed to start" if who
                                   else f"service {svc.name} failed to start", exc)
                self.remove_service(svc)
        # long-lived start-up objects need no more collection; fewer young-generation
        # passes keep the message hot path from paying for cycle detection
        # (the oldest generation still runs every 200 young passes: jobs leave cycles)
        gc.freeze()
        gc.set_threshold(50_000, 20, 10)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        self.connector = LocalConnector(self)
        await self.connector.start()
        self.overlay = Overlay(self)
        await self.overlay.start()
        self.state = "join"
        # a signal or shutdown while waiting for the subtree ends the broker too
        join = asyncio.ensure_future(self.overlay.wait_subtree())
        await asyncio.wait([join, self.done], return_when=asyncio.FIRST_COMPLETED)
        if self.done.done():
            join.cancel()
            return self.done.result()
        self.state = "run"
        self.log(LOG_INFO, f"rank {self.rank} of {self.size} up in {time.time() - self.started_at:.3f}s")
        pending = self.plugins.broker_ready()
        if self.rank == 0:
            self.state = "run"
            asyncio.ensure_future(self._start_instance(pending))
            self.overlay.start_heartbeat()
        else:
            self.started.set()
        rc = await self.done
        return rc

    async def _start_instance(self, pending: list) -> None:
        """Finish the plugins' start-up work (resources, scheduler: flux-core's rc1),
        then the instance is ready: `state-machine.wait` answers, rc2 runs."""
        for name, aw in pending:
            try:
                await aw
            except Exception as exc:  # noqa: BLE001 - the instance runs without it
                self.log_exception(f"plugin {name}: start-up failed", exc)
        self.started.set()
        await self._run_initial_program()

    async def _run_initial_program(self) -> None:
        from flux.core.broker.initial import run_initial_program

        if self.attrs.get("broker.rc2_none", "0") not in ("0", ""):
            return
        rc = await run_initial_program(self, self.initial_program)
        await self.shutdown(rc)

    def _on_signal(self, sig: int) -> None:
        self.log(LOG_INFO, f"received signal {signal.Signals(sig).name}, shutting down")
        if self.initial_proc is not None and self.initial_proc.returncode is None:
            try:
                self.initial_proc.send_signal(signal.SIGHUP if sig == signal.SIGHUP else signal.SIGTERM)
            except ProcessLookupError:
                pass
            return
        # a running instance with no initial program (`flux alloc --bg`) ends cleanly
        clean = self.state == "run" and sig == signal.SIGTERM
        asyncio.ensure_future(self.shutdown(128 + sig if self.rank == 0 and not clean else 0))

    async def shutdown(self, rc: int = 0) -> None:
        """Shut this broker's subtree down (children first), then this broker."""
        if self.shutdown_started:
            return
        self.shutdown_started = True
        self.exit_code = rc
        try:
            if self.rank == 0 and self.plugins is not None and self.state == "run":
                self.state = "cleanup"
                await self.plugins.broker_cleanup()
            self.state = "shutdown"
            if self.overlay is not None:
                await self.overlay.shutdown_children()
            self.state = "finalize"
            if self.plugins is not None:
                self.plugins.broker_shutdown()
            for svc in reversed(self.service_objects):
                try:
                    await svc.stop()
                except Exception as exc:  # noqa: BLE001
                    self.log_exception(f"stopping {svc.name}", exc)
            if self.connector is not None:
                self.connector.close()
            if self.overlay is not None:
                await self.overlay.goodbye()
        finally:
            self.state = "exit"
            if self.done is not None and not self.done.done():
                self.done.set_result(rc)
