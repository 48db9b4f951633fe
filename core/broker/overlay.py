"""The tree-based overlay network (TBON) over ZeroMQ.

Each broker binds a ROUTER for its children and connects a DEALER (identity = its
rank) to its parent. Control messages carry the join/leave protocol:

  HELLO     child -> parent  once the child's whole subtree is up (quorum flows up)
  KEEPALIVE child -> parent  every heartbeat period
  SHUTDOWN  parent -> child  shut your subtree down
  GOODBYE   child -> parent  my subtree is down, I am leaving
  PING/PONG parent <-> child liveness sweep after a socket disconnect
  STATUS    child -> parent  my subtree's health changed (full/partial/degraded)

With CURVE keys (a `[bootstrap] curve_cert`), the ROUTER is a CURVE server whose ZAP
handler admits only the instance's key; a peer that fails the handshake is logged
and dropped, and a broker refused by its parent says so and exits.

A child that disappears is noticed through the socket monitor (then a ping sweep
names which child it was) or through missed keepalives; requests in flight to it
are answered with EHOSTUNREACH so nothing waits forever.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
import time

import zmq
from flux.core.errors import FluxError
from flux.core.message import (
    CONTROL,
    EVENT,
    REQUEST,
    RESPONSE,
    ROLE_LOCAL,
    Message,
    ProtocolError,
)
from flux.core.util.fsd import parse_fsd
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("flux.overlay")

HELLO, KEEPALIVE, SHUTDOWN, GOODBYE, PING, PONG, STATUS = 1, 2, 3, 4, 5, 6, 7
# subtree health, reported up with STATUS when it changes (flux overlay status)
SUBTREE_STATUS = ["full", "partial", "degraded"]


HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def _handshake_reason(event: int, value: int) -> str:
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"CURVE key not authorized (ZAP status {value})"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "security mechanism mismatch (one side has no CURVE certificate)"
        if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "CURVE keys do not match (a different certificate)"
        return f"ZMTP protocol error {value:#x}"
    return "handshake failed (the peer closed it: keys do not match?)"


def default_endpoint(rundir: str, rank: int) -> str:
    return f"ipc://{rundir}/tbon-{rank}"


class _Reader:
    """Feeds every message of a (synchronous) ZeroMQ socket to `on_frames`, driven by
    the event loop watching the socket's FD.

    zmq.asyncio costs one Future and one loop wakeup per message; draining here is
    several times faster. The FD is edge-triggered: it is read until EVENTS shows no
    more input, and `kick()` (after a send on the same socket) looks again.
    """

    BATCH = 256  # messages per turn, so one busy socket cannot starve the loop

    def __init__(self, sock, on_frames):
        self.sock = sock
        self.on_frames = on_frames
        self.loop = asyncio.get_running_loop()
        self.fd = sock.getsockopt(zmq.FD)
        self.kicked = False
        self.closed = False
        self.loop.add_reader(self.fd, self.drain)
        self.kick()

    def kick(self) -> None:
        if not self.kicked and not self.closed:
            self.kicked = True
            self.loop.call_soon(self.drain)

    def drain(self) -> None:
        self.kicked = False
        sock = self.sock
        for _ in range(self.BATCH):
            if self.closed:
                return
            try:
                if not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    return
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:  # the socket was closed
                self.close()
                return
            self.on_frames(frames)
        self.kick()  # more may be waiting: continue on the next turn

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.loop.remove_reader(self.fd)
            except (ValueError, OSError):
                pass


class Overlay:
    def __init__(self, broker):
        self.broker = broker
        b = broker
        self.rank = b.rank
        self.parent = b.topo.parent(b.rank)
        self.children = b.topo.children(b.rank)
        self.child_state: dict[int, str] = {r: "connecting" for r in self.children}
        self.child_seen: dict[int, float] = {}
        self.child_subtree: dict[int, str] = {}  # health a child reports for its subtree
        self.reported_status = "full"
        self.inflight: dict[int, dict] = {r: {} for r in self.children}
        self.parent_seen = time.monotonic()
        self.subtree_ready = asyncio.Event()
        self.children_gone = asyncio.Event()
        self.ctx = zmq.Context()
        self.readers: list[_Reader] = []
        self.router = None
        self.dealer = None
        self.tasks: list[asyncio.Task] = []
        self.pongs: set[int] = set()
        self.sweep_targets: set[int] = set()
        self.pong_event = asyncio.Event()
        self.sweeping = False
        self.closing = False
        self.parent_lost = False
        self.parent_heard = False  # silence counts only once the parent has spoken
        self.started = time.monotonic()
        self.join_warned = False
        a = b.attrs
        self.period = parse_fsd(a.get("heartbeat.period", "2s"))
        self.torpid_max = parse_fsd(a.get("tbon.torpid_max", "30s"))
        self.sweep_timeout = min(parse_fsd(a.get("tbon.torpid_min", "5s")), 2.0)
        self.curve = getattr(b.bootstrap, "curve", None)
        self.ipv6 = getattr(b.bootstrap, "ipv6", False)
        self.zap = None
        self.handshake_failures = 0  # not yet matched by their DISCONNECTED event
        self.refusals: dict[str, list[float]] = {}  # reason -> [count, last logged]

    # ----------------------------------------------------------------- setup
    def _secure(self, sock, server: bool) -> None:
        if self.ipv6:
            sock.setsockopt(zmq.IPV6, 1)
        c = self.curve
        if not c:
            return
        sock.curve_publickey = c["public"]
        sock.curve_secretkey = c["secret"]
        if server:
            if c.get("allowed") is not None:
                from flux.core.broker.zap import ZAP_DOMAIN, ZapHandler

                # bound before the ROUTER, so no client skips the check
                self.zap = ZapHandler(self.ctx, c["allowed"], self.broker.log)
                self.readers.append(_Reader(self.zap.sock, self.zap.handle))
                sock.zap_domain = ZAP_DOMAIN
            sock.curve_server = True
        else:
            sock.curve_serverkey = c["server_public"]

    async def start(self) -> None:
        a = self.broker.attrs
        if self.children:
            ep = a.get("tbon.endpoint") or default_endpoint(a["rundir"], self.rank)
            self.router = self.ctx.socket(zmq.ROUTER)
            self.router.setsockopt(zmq.LINGER, 0)
            # unbounded queues, as flux-core: a ROUTER silently drops past its high-water mark
            self.router.setsockopt(zmq.SNDHWM, 0)
            self.router.setsockopt(zmq.RCVHWM, 0)
            self._secure(self.router, server=True)
            try:
                self.router.bind(ep)
            except zmq.ZMQError as exc:
                raise FluxError(errno.EADDRNOTAVAIL, f"overlay: cannot bind {ep}: {exc}") from None
            a.set("tbon.endpoint", self.router.getsockopt_string(zmq.LAST_ENDPOINT), 1)
            self.readers.append(_Reader(self.router, self._recv_children))
            self._monitor(self.router, self._children_disconnect)
        else:
            self.subtree_ready.set()
            self.children_gone.set()
        exchange = getattr(self.broker.bootstrap, "exchange", None)
        if exchange is not None:
            # e.g. PMI: publish the endpoint just bound, learn the parent's (and its key)
            await exchange(self.broker)
            self.curve = getattr(self.broker.bootstrap, "curve", None)
        if self.parent is not None:
            pep = a.get("tbon.parent-endpoint") or default_endpoint(a["rundir"], self.parent)
            a.set("tbon.parent-endpoint", pep, 1)
            self.dealer = self.ctx.socket(zmq.DEALER)
            self.dealer.setsockopt(zmq.IDENTITY, str(self.rank).encode())
            self.dealer.setsockopt(zmq.LINGER, 2000)
            self.dealer.setsockopt(zmq.SNDHWM, 0)
            self.dealer.setsockopt(zmq.RCVHWM, 0)
            self._secure(self.dealer, server=False)
            self.dealer.connect(pep)
            self.readers.append(_Reader(self.dealer, self._recv_parent))
            self._monitor(self.dealer, self._parent_disconnect)
        self.tasks.append(asyncio.ensure_future(self._watchdog()))

    async def wait_subtree(self) -> None:
        await self.subtree_ready.wait()
        if self.parent is not None:
            self._control_up(HELLO)

    def start_heartbeat(self) -> None:
        self.tasks.append(asyncio.ensure_future(self._heartbeat()))

    # --------------------------------------------------------------- sending
    def _send(self, sock, frames: list[bytes]) -> bool:
        """Queue frames without blocking; False (never an exception) if the socket is gone."""
        if sock is None or sock.closed:
            return False
        try:
            sock.send_multipart(frames, flags=zmq.DONTWAIT)
        except zmq.ZMQError as exc:
            log.debug("overlay send failed: %s", exc)
            return False
        # a send may consume the edge of the socket's (edge-triggered) FD: look again
        for r in self.readers:
            if r.sock is sock:
                r.kick()
        return True

    def _control_up(self, ctype: int, status: int = 0) -> None:
        m = Message(CONTROL, control_type=ctype, control_status=status)
        self._send(self.dealer, m.encode_frames(with_route=False))

    def _control_down(self, rank: int, ctype: int, status: int = 0) -> None:
        m = Message(CONTROL, control_type=ctype, control_status=status)
        self._send(self.router, [str(rank).encode(), *m.encode_frames(with_route=False)])

    def send_up(self, msg: Message) -> bool:
        if self.dealer is None or self.parent_lost:
            return False
        return self._send(self.dealer, msg.encode_frames())

    def send_down(self, rank: int, msg: Message) -> bool:
        if self.router is None or self.child_state.get(rank) in ("lost", "offline", None):
            return False
        key = (tuple(msg.route), msg.matchtag)
        track = msg.type == REQUEST and not msg.noresponse
        if track:
            self.inflight[rank][key] = (
                msg.topic, list(msg.route), msg.matchtag, msg.flags, msg.userid, msg.rolemask)
        if not self._send(self.router, [str(rank).encode(), *msg.encode_frames()]):
            if track:
                self.inflight[rank].pop(key, None)
            return False
        return True

    def send_response(self, rank: int, msg: Message) -> None:
        if rank == self.parent:
            if not self.parent_lost:
                self._send(self.dealer, msg.encode_frames())
        elif rank in self.child_state:
            if self.child_state[rank] not in ("lost", "offline"):
                self._send(self.router, [str(rank).encode(), *msg.encode_frames()])

    def send_event(self, ev: Message) -> None:
        if self.router is None:
            return
        frames = ev.encode_frames(with_route=False)
        for r, st in self.child_state.items():
            if st in ("up", "connecting"):
                self._send(self.router, [str(r).encode(), *frames])

    # ------------------------------------------------------------- receiving
    def _recv_children(self, frames: list[bytes]) -> None:
        ident = frames[0].decode(errors="replace")
        if not ident.isdigit() or int(ident) not in self.child_state:
            self.broker.log(4, f"overlay: message from unknown peer {ident!r} dropped")
            return
        rank = int(ident)
        try:
            msg = Message.decode_frames(frames[1:])
        except ProtocolError as exc:
            self.broker.log(4, f"overlay: malformed message from rank {rank}: {exc}")
            return
        self.child_seen[rank] = time.monotonic()
        try:
            self._from_child(rank, msg)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the overlay
            self.broker.log_exception(f"overlay: handling message from rank {rank}", exc)

    def _from_child(self, rank: int, msg: Message) -> None:
        t = msg.type
        if t == REQUEST:
            msg.route.append(str(rank))
            msg.rolemask &= ~ROLE_LOCAL
            self.broker.handle_request(msg)
        elif t == RESPONSE:
            if not msg.streaming or msg.errnum:
                self.inflight[rank].pop((tuple(msg.route), msg.matchtag), None)
            self.broker.send_response(msg)
        elif t == CONTROL:
            ct = msg.control_type
            if ct == HELLO:
                if self.child_state[rank] != "up":
                    self.child_state[rank] = "up"
                    self.broker.log(6, f"overlay: child rank {rank} joined")
                self._check_subtree()
                self._status_changed()
            elif ct == GOODBYE:
                self.child_state[rank] = "offline"
                self._fail_inflight(rank, "has shut down")
                self._check_gone()
                self._status_changed()
            elif ct == STATUS:
                if 0 <= msg.control_status < len(SUBTREE_STATUS):
                    self.child_subtree[rank] = SUBTREE_STATUS[msg.control_status]
                    self._status_changed()
            elif ct == KEEPALIVE:
                # answered, so the child sees its parent alive even between heartbeats
                self._control_down(rank, KEEPALIVE)
            elif ct == PONG:
                self.pongs.add(rank)
                if self.pongs >= self.sweep_targets:
                    self.pong_event.set()
        # events never flow up

    def _recv_parent(self, frames: list[bytes]) -> None:
        try:
            msg = Message.decode_frames(frames)
        except ProtocolError as exc:
            self.broker.log(4, f"overlay: malformed message from parent: {exc}")
            return
        self.parent_seen = time.monotonic()
        self.parent_heard = True
        try:
            self._from_parent(msg)
        except Exception as exc:  # noqa: BLE001
            self.broker.log_exception("overlay: handling message from parent", exc)

    def _from_parent(self, msg: Message) -> None:
        t = msg.type
        if t == REQUEST:
            msg.route.append(str(self.parent))
            msg.rolemask &= ~ROLE_LOCAL
            self.broker.handle_request(msg)
        elif t == RESPONSE:
            self.broker.send_response(msg)
        elif t == EVENT:
            self.broker.distribute_event(msg)
        elif t == CONTROL:
            if msg.control_type == SHUTDOWN:
                asyncio.ensure_future(self.broker.shutdown(msg.control_status))
            elif msg.control_type == PING:
                self._control_up(PONG)

    # ------------------------------------------------------------ liveness
    def _check_subtree(self) -> None:
        if all(s in ("up", "offline", "lost") for s in self.child_state.values()):
            self.subtree_ready.set()

    def _check_gone(self) -> None:
        if all(s in ("offline", "lost") for s in self.child_state.values()):
            self.children_gone.set()

    def _fail_inflight(self, rank: int, why: str) -> None:
        pending = self.inflight.get(rank, {})
        self.inflight[rank] = {}
        for topic, route, tag, flags, userid, rolemask in pending.values():
            req = Message(REQUEST, topic, flags=flags, userid=userid, rolemask=rolemask,
                          matchtag=tag, route=list(route))
            self.broker.send_response(req.response(
                errnum=errno.EHOSTUNREACH, errstr=f"rank {rank} {why}"))

    def child_lost(self, rank: int, why: str) -> None:
        if self.child_state.get(rank) in ("lost", "offline"):
            return
        self.child_state[rank] = "lost"
        self.broker.log(3, f"overlay: lost child rank {rank}: {why}")
        self._fail_inflight(rank, "was lost")
        self._check_subtree()
        self._check_gone()
        self._status_changed()

    def _monitor(self, sock, on_disconnect) -> None:
        msock = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED)
        server = sock is self.router

        def on_event(frames):
            ev = parse_monitor_message(frames)
            if self.closing:
                return
            if ev["event"] & HANDSHAKE_FAILED:
                self._handshake_failed(server, ev["event"], ev["value"])
            elif ev["event"] == zmq.EVENT_DISCONNECTED:
                if server and self.handshake_failures:
                    # the end of a refused connection, not of a child's: nobody to sweep for
                    self.handshake_failures -= 1
                else:
                    on_disconnect()

        self.readers.append(_Reader(msock, on_event))

    def _handshake_failed(self, server: bool, event: int, value: int) -> None:
        why = _handshake_reason(event, value)
        if not server:
            if self.parent_lost or self.broker.shutdown_started:
                return
            self.parent_lost = True
            text = f"overlay: parent rank {self.parent} refused this broker: {why}; shutting down"
            self.broker.log(3, text)
            # nothing reaches rank 0's log from a refused broker: say it here
            print(f"flux-broker: {text}", file=sys.stderr, flush=True)
            asyncio.ensure_future(self.broker.shutdown(1))
            return
        self.handshake_failures += 1
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and self.zap is not None:
            return  # the ZAP handler logged it, with the peer's address
        # a peer retrying forever must not flood the log: each reason once a minute
        now = time.monotonic()
        count, last = self.refusals.get(why, [0, -3600.0])
        count += 1
        if now - last >= 60:
            more = f" ({count} times since last logged)" if count > 1 else ""
            self.broker.log(3, f"overlay: dropped a peer that failed the handshake: {why}{more}")
            count, last = 0, now
        self.refusals[why] = [count, last]

    def _children_disconnect(self) -> None:
        if not self.sweeping:
            asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        """Some child's connection dropped: ping all children, the silent ones are lost."""
        self.sweeping = True
        try:
            targets = [r for r, s in self.child_state.items() if s in ("up", "connecting")]
            self.pongs = set()
            self.sweep_targets = set(targets)
            self.pong_event = asyncio.Event()
            for r in targets:
                self._control_down(r, PING)
            try:
                await asyncio.wait_for(self.pong_event.wait(), self.sweep_timeout)
            except TimeoutError:
                pass
            for r in targets:
                if r not in self.pongs and self.child_state.get(r) in ("up", "connecting"):
                    self.child_lost(r, "connection closed and no answer to ping")
        finally:
            self.sweeping = False

    def _parent_disconnect(self) -> None:
        if self.closing or self.broker.shutdown_started:
            return
        self.parent_lost = True
        self.broker.log(3, f"overlay: lost connection to parent rank {self.parent}; shutting down")
        asyncio.ensure_future(self.broker.shutdown(1))

    async def _watchdog(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.period)
            now = time.monotonic()
            if self.dealer is not None and not self.parent_lost:
                self._control_up(KEEPALIVE)
                if (self.parent_heard and now - self.parent_seen > self.torpid_max
                        and not self.broker.shutdown_started):
                    self.parent_lost = True
                    self.broker.log(3, f"overlay: parent rank {self.parent} silent for "
                                       f"{now - self.parent_seen:.1f}s; shutting down")
                    asyncio.ensure_future(self.broker.shutdown(1))
            for r, st in list(self.child_state.items()):
                if st == "up" and now - self.child_seen.get(r, now) > self.torpid_max:
                    self.child_lost(r, f"silent for {now - self.child_seen[r]:.1f}s")
            waiting = [r for r, st in self.child_state.items() if st == "connecting"]
            if waiting and not self.join_warned and now - self.started > self.torpid_max:
                # nothing to time out on (it never connected), but say what we wait for
                self.join_warned = True
                self.broker.log(3, f"overlay: still waiting for child rank(s) "
                                   f"{', '.join(map(str, waiting))} to join after "
                                   f"{now - self.started:.0f}s")

    async def _heartbeat(self) -> None:
        n = 0
        while not self.closing:
            self.broker.publish("heartbeat.pulse", {"epoch": n})
            n += 1
            await asyncio.sleep(self.period)

    # --------------------------------------------------------------- health
    def subtree_status(self) -> str:
        """full: every broker below is up; partial: some are offline (or not yet
        joined), none lost; degraded: at least one was lost."""
        states = self.child_state
        below = [self.child_subtree.get(r, "full") for r, s in states.items() if s == "up"]
        if any(s == "lost" for s in states.values()) or "degraded" in below:
            return "degraded"
        if any(s in ("offline", "connecting") for s in states.values()) or "partial" in below:
            return "partial"
        return "full"

    def _status_changed(self) -> None:
        new = self.subtree_status()
        if new != self.reported_status:
            self.reported_status = new
            if self.dealer is not None and not self.parent_lost and not self.closing:
                self._control_up(STATUS, SUBTREE_STATUS.index(new))

    def health(self) -> dict:
        states = self.child_state
        status = self.subtree_status()
        return {"rank": self.rank, "status": status,
                "children": [{"rank": r, "status": s} for r, s in sorted(states.items())]}

    # ------------------------------------------------------------- shutdown
    async def shutdown_children(self, timeout: float = 30.0) -> None:
        for r, st in self.child_state.items():
            if st == "connecting" and r not in self.child_seen:
                # never heard from (not connected): nothing to wait for
                self.child_state[r] = "offline"
            elif st in ("up", "connecting"):
                self._control_down(r, SHUTDOWN, self.broker.exit_code & 0xFF)
        self._check_gone()
        try:
            await asyncio.wait_for(self.children_gone.wait(), timeout)
        except TimeoutError:
            for r, st in self.child_state.items():
                if st not in ("offline", "lost"):
                    self.broker.log(3, f"overlay: child rank {r} did not leave within {timeout}s")

    async def goodbye(self) -> None:
        self.closing = True
        if self.dealer is not None and not self.parent_lost:
            self._control_up(GOODBYE)
        for t in self.tasks:
            t.cancel()
        for r in self.readers:
            r.close()
        await asyncio.sleep(0)
        if self.router is not None:
            self.router.close(linger=0)
        if self.zap is not None:
            self.zap.close()
        # linger lets the GOODBYE reach the parent before the context goes away
        # (nothing can reach a lost parent: do not wait for it)
        self.ctx.destroy(linger=0 if self.parent_lost else 2000)
