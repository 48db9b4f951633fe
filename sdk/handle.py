"""`flux.Flux`: a connection to a broker, and the small reactor that drives it.

Synchronous like flux-core's bindings: `rpc()` returns a future; `get()` blocks
while reading the socket; `then()` callbacks, message watchers and timers run
inside `reactor_run()`.
"""

from __future__ import annotations

import collections
import errno
import heapq
import os
import selectors
import socket
import time
from collections.abc import Callable

from flux.core.errors import FluxError
from flux.core.message import (
    EVENT,
    FLAG_NORESPONSE,
    FLAG_STREAMING,
    NODEID_ANY,
    PREAMBLE_SIZE,
    REQUEST,
    RESPONSE,
    USERID_UNKNOWN,
    Message,
    ProtocolError,
    decode_stream_body,
    parse_preamble,
)
from flux.future import RPC, Future
from flux.message import Message as UserMessage

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

RPC_NORESPONSE = 1
RPC_STREAMING = 2


def default_uri() -> str:
    return os.environ.get("FLUX_URI") or "local:///run/flux/local"


def _path_of(url: str) -> str | None:
    """The socket path of a URI (None: an ssh:// URI of another host, see flux.connect)."""
    if url.startswith("local://") or "://" not in url:
        return url[len("local://"):] if url.startswith("local://") else url
    from flux.connect import socket_path

    return socket_path(url)


class Watcher:
    """Something the reactor waits on; active while started."""

    def __init__(self, handle: Flux, callback: Callable, args: Any = None):
        self.handle = handle
        self.callback = callback
        self.args = args
        self.active = False

    def start(self) -> Watcher:
        if not self.active:
            self.active = True
            self.handle._watchers.add(self)
            try:
                self._on_start()
            except BaseException:
                # e.g. an fd that cannot be polled: not left active (the reactor would
                # wait for it forever)
                self.active = False
                self.handle._watchers.discard(self)
                raise
        return self

    def stop(self) -> Watcher:
        if self.active:
            self.active = False
            self.handle._watchers.discard(self)
            self._on_stop()
        return self

    def destroy(self) -> None:
        self.stop()

    def _on_start(self) -> None:
        pass

    def _on_stop(self) -> None:
        pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class MessageWatcher(Watcher):
    def __init__(self, handle, callback, type_mask, topic_glob, args):
        super().__init__(handle, callback, args)
        self.type_mask = type_mask
        self.topic_glob = topic_glob or "*"

    def matches(self, msg: Message) -> bool:
        if not msg.type & self.type_mask:
            return False
        g = self.topic_glob
        if g == "*":
            return True
        if g.endswith("*"):
            return msg.topic.startswith(g[:-1])
        return msg.topic == g


class TimerWatcher(Watcher):
    def __init__(self, handle, after, callback, repeat, args):
        super().__init__(handle, callback, args)
        self.after = after
        self.repeat = repeat
        self.deadline = 0.0

    def _on_start(self):
        self.deadline = time.monotonic() + self.after
        self.handle._add_timer(self)


class FDWatcher(Watcher):
    def __init__(self, handle, fd, events, callback, args):
        super().__init__(handle, callback, args)
        self.fd = fd
        self.events = events

    def _on_start(self):
        ev = 0
        if self.events & 1:
            ev |= selectors.EVENT_READ
        if self.events & 2:
            ev |= selectors.EVENT_WRITE
        self.handle._sel.register(self.fd, ev, self)

    def _on_stop(self):
        try:
            self.handle._sel.unregister(self.fd)
        except (KeyError, ValueError):
            pass


class SignalWatcher(Watcher):
    def __init__(self, handle, signum, callback, args):
        super().__init__(handle, callback, args)
        self.signum = signum
        self._old = None

    def _on_start(self):
        import signal

        self._old = signal.signal(self.signum, lambda s, f: self.handle._pending_signals.append(self))

    def _on_stop(self):
        import signal

        if self._old is not None:
            signal.signal(self.signum, self._old)


class Flux:
    """A handle on a Flux instance (`flux.Flux(url=None)`, default `FLUX_URI`)."""

    def __init__(self, url: str | bytes | None = None, flags: int = 0, handle: Any = None):
        if isinstance(url, bytes):
            url = url.decode()
        self.url = url or default_uri()
        path = _path_of(self.url)
        self._relay = None
        if path is None:
            from flux.connect import ssh_relay

            self.sock, self._relay = ssh_relay(self.url)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if path is not None:
                self.sock.connect(path)
            status = self._recv_exact(1)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            self.sock.close()
            raise FluxError(errno.ENOENT, f"Unable to connect to Flux at {self.url}: "
                                          f"{exc.strerror or 'no broker is listening there'}") from None
        except PermissionError:
            self.sock.close()
            raise FluxError(errno.EACCES, f"Unable to connect to Flux at {self.url}: permission denied") from None
        if not status:
            self.sock.close()
            raise FluxError(errno.ECONNRESET, f"Unable to connect to Flux at {self.url}: connection closed")
        if status[0] != 0:
            self.sock.close()
            raise FluxError(status[0], f"Flux at {self.url} refused the connection: {os.strerror(status[0])}")
        self.flags = flags
        self._rbuf = bytearray()
        self._matchtag = 0
        self._rpcs: dict[int, RPC] = {}
        self._events: collections.deque = collections.deque()
        self._requests: collections.deque = collections.deque()
        self._watchers: set[Watcher] = set()
        self._active_futures: set[Future] = set()
        self._callbacks: collections.deque = collections.deque()
        self._timers: list = []
        self._timer_seq = 0
        self._pending_signals: list = []
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        self._stop = False
        self._stop_error = False
        self._in_reactor = 0
        self._cred = self._env_credentials()
        self.aux: dict = {}
        self._conf: dict | None = None
        self.closed = False

    @staticmethod
    def _env_credentials() -> tuple[int, int] | None:
        uid = os.environ.get("FLUX_HANDLE_USERID")
        if uid is None:
            return None
        return int(uid), int(os.environ.get("FLUX_HANDLE_ROLEMASK", "2"))

    # ----------------------------------------------------------------- I/O
    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                return out
            out += chunk
        return out

    def send(self, msg: Message) -> None:
        if self.closed:
            raise FluxError(errno.EBADF, "this Flux handle is closed")
        if self._cred is not None and msg.userid == USERID_UNKNOWN:
            msg.userid, msg.rolemask = self._cred
        try:
            self.sock.sendall(msg.encode_stream())
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise FluxError(errno.ECONNRESET, f"lost connection to the broker: {exc.strerror}") from None

    def _read_available(self, block: bool) -> bool:
        """Read from the socket and dispatch whole messages; False on EOF."""
        try:
            self.sock.setblocking(block)
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)
        if not data:
            self._connection_lost()
            return False
        buf = self._rbuf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= PREAMBLE_SIZE:
            need = parse_preamble(buf[pos:pos + PREAMBLE_SIZE])
            if n - pos - PREAMBLE_SIZE < need:
                break
            body = bytes(buf[pos + PREAMBLE_SIZE:pos + PREAMBLE_SIZE + need])
            pos += PREAMBLE_SIZE + need
            try:
                self._dispatch(decode_stream_body(body))
            except ProtocolError:
                continue
        if pos:
            del buf[:pos]
        return True

    def _connection_lost(self) -> None:
        self.closed = True
        for rpc in list(self._rpcs.values()):
            rpc.fulfill_error(errno.ECONNRESET, "lost connection to the broker")
        self._rpcs.clear()
        self._stop = True
        self._stop_error = True

    def _dispatch(self, msg: Message) -> None:
        t = msg.type
        if t == RESPONSE:
            rpc = self._rpcs.get(msg.matchtag)
            if rpc is not None:
                rpc._deliver(msg)
            return
        for w in list(self._watchers):
            if isinstance(w, MessageWatcher) and w.active and w.matches(msg):
                self._callbacks.append((w.callback, (self, w, UserMessage(msg), w.args)))
                return
        if t == EVENT:
            self._events.append(msg)
        elif t == REQUEST:
            self._requests.append(msg)
        # control messages are not for clients

    # ------------------------------------------------------------- reactor
    def _schedule_callback(self, fut: Future) -> None:
        self._callbacks.append((fut._run_then, ()))

    def _add_timer(self, w: TimerWatcher) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (w.deadline, self._timer_seq, w))

    def _next_timeout(self, limit: float | None) -> float | None:
        while self._timers and not self._timers[0][2].active:
            heapq.heappop(self._timers)
        t = None
        if self._timers:
            t = max(0.0, self._timers[0][0] - time.monotonic())
        if limit is not None:
            t = limit if t is None else min(t, limit)
        return t

    def _poll(self, timeout: float | None, run_callbacks: bool) -> None:
        """Wait for I/O once (timeout None = forever), dispatching what arrives."""
        if run_callbacks and (self._callbacks or self._pending_signals):
            timeout = 0
        tmo = self._next_timeout(timeout) if run_callbacks else timeout
        for key, events in self._sel.select(tmo):
            if key.data is None:
                if not self._read_available(block=False):
                    return
            elif run_callbacks:
                w = key.data
                self._callbacks.append((w.callback, (self, w, key.fd, events, w.args)))
        if run_callbacks:
            self._run_timers()

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, w = heapq.heappop(self._timers)
            if not w.active:
                continue
            if w.repeat > 0:
                w.deadline = now + w.repeat
                self._add_timer(w)
            else:
                w.active = False
                self._watchers.discard(w)
            self._callbacks.append((w.callback, (self, w, 0, w.args)))

    def _run_callbacks(self) -> None:
        while self._pending_signals:
            w = self._pending_signals.pop(0)
            self._callbacks.append((w.callback, (self, w, w.signum, w.args)))
        while self._callbacks and not self._stop:
            fn, args = self._callbacks.popleft()
            fn(*args)

    def _wait_until(self, cond: Callable[[], bool], timeout: float = -1.0) -> None:
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while not cond():
            if self.closed:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._poll(remaining, run_callbacks=False)

    def _run_until(self, cond: Callable[[], bool], timeout: float = -1.0) -> None:
        """Like _wait_until, but callbacks, watchers and timers run meanwhile (a
        future fulfilled by other futures' callbacks, e.g. flux.future.FutureExt)."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        stop = self._stop
        self._stop = False
        self._in_reactor += 1
        try:
            while not cond() and not self.closed:
                self._run_callbacks()
                if cond() or not self._active():
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._poll(remaining, run_callbacks=True)
                self._run_callbacks()
        finally:
            self._in_reactor -= 1
            self._stop = stop

    def _active(self) -> bool:
        return bool(self._watchers or self._active_futures or self._callbacks)

    def reactor_run(self, reactor: Any = None, flags: int = 0) -> int:
        """Run watchers and callbacks until none is active, or reactor_stop().

        Signature and result as flux-core's: ``reactor`` (this handle's, the only one)
        may be passed first, as older scripts do (``h.reactor_run(h.get_reactor(), 0)``);
        returns how many watchers are still active (0 when the reactor ran out of work),
        or -1 after :meth:`reactor_stop_error`.  A lost broker connection raises
        OSError(ECONNRESET)."""
        if isinstance(reactor, int) and not isinstance(reactor, bool) and flags == 0:
            flags, reactor = reactor, None  # reactor_run(flags) as this API once took
        self._stop = False
        self._stop_error = False
        self._in_reactor += 1
        try:
            while not self._stop:
                self._run_callbacks()
                if self._stop or not self._active():
                    break
                if flags & 1:  # NOWAIT
                    self._poll(0, True)
                    self._run_callbacks()
                    break
                self._poll(None, True)
                self._run_callbacks()
                if flags & 2:  # ONCE
                    break
        finally:
            self._in_reactor -= 1
        if self._stop_error:
            if self.closed:
                raise FluxError(errno.ECONNRESET, "lost connection to the broker")
            return -1
        return len(self._watchers) + len(self._active_futures)

    def reactor_running(self) -> bool:
        """True while this handle's reactor is running (in a callback)."""
        return self._in_reactor > 0

    def reactor_stop(self, reactor: Any = None) -> None:
        self._stop = True

    def reactor_stop_error(self, reactor: Any = None) -> None:
        self._stop = True
        self._stop_error = True

    def get_reactor(self) -> Flux:
        return self

    # --------------------------------------------------------------- RPC
    def rpc(self, topic: str, payload: Any = None, nodeid: int = NODEID_ANY, flags: int = 0) -> RPC:
        """Send a request; returns its future (`get()` for the payload)."""
        if isinstance(payload, str) and payload:
            payload = payload.encode() + b"\0"
        mflags = 0
        streaming = bool(flags & RPC_STREAMING)
        if streaming:
            mflags |= FLAG_STREAMING
        noresponse = bool(flags & RPC_NORESPONSE)
        if noresponse:
            mflags |= FLAG_NORESPONSE
            tag = 0
        else:
            self._matchtag = (self._matchtag + 1) & 0x7FFFFFFF or 1
            tag = self._matchtag
        fut = RPC(self, topic, tag, streaming)
        if not noresponse:
            self._rpcs[tag] = fut
        self.send(Message(REQUEST, topic, payload, flags=mflags, nodeid=nodeid, matchtag=tag))
        if noresponse:
            fut.fulfill(Message(RESPONSE, topic))
        return fut

    def request_recv(self, timeout: float = -1.0) -> UserMessage:
        """Next request sent to a service this handle registered."""
        self._wait_until(lambda: bool(self._requests), timeout)
        if not self._requests:
            raise TimeoutError(errno.ETIMEDOUT, "no request arrived")
        return UserMessage(self._requests.popleft())

    def respond(self, msg: UserMessage | Message, payload: Any = None) -> None:
        m = msg.core if isinstance(msg, UserMessage) else msg
        if m.noresponse:
            return
        if isinstance(payload, str):
            payload = payload.encode() + b"\0"
        self.send(m.response(payload))

    def respond_error(self, msg: UserMessage | Message, errnum: int, errstr: str | None = None) -> None:
        m = msg.core if isinstance(msg, UserMessage) else msg
        if not m.noresponse:
            self.send(m.response(errnum=errnum, errstr=errstr))

    def service_register(self, name: str) -> RPC:
        return self.rpc("service.add", {"service": name})

    def service_unregister(self, name: str) -> RPC:
        return self.rpc("service.remove", {"service": name})

    # ------------------------------------------------------------- events
    def event_subscribe(self, topic: str) -> None:
        self.rpc("event.subscribe", {"topic": topic}).get()

    def event_unsubscribe(self, topic: str) -> None:
        self.rpc("event.unsubscribe", {"topic": topic}).get()

    def event_recv(self, topic: str | None = None, payload: Any = None, timeout: float = -1.0) -> UserMessage:
        """Next event (optionally the next whose topic starts with `topic`)."""

        def pick():
            for i, m in enumerate(self._events):
                if topic is None or m.topic.startswith(topic):
                    del self._events[i]
                    return m
            return None

        found = []

        def cond():
            m = pick()
            if m is not None:
                found.append(m)
            return bool(found)

        self._wait_until(cond, timeout)
        if not found:
            raise TimeoutError(errno.ETIMEDOUT, "no event arrived")
        return UserMessage(found[0])

    def event_send(self, topic: str, payload: Any = None, private: bool = False) -> int:
        """Publish an event to the instance; returns its sequence number."""
        if isinstance(payload, bytes):
            import base64

            p = {"topic": topic, "flags": 0x20 if private else 0,
                 "payload": base64.b64encode(payload).decode(), "encoding": "base64"}
        else:
            p = {"topic": topic, "flags": 0x20 if private else 0, "payload": payload}
        return self.rpc("event.publish", p).get().get("seq", 0)

    def event_create(self, topic: str, payload: Any = None) -> Message:
        return Message(EVENT, topic, payload)

    # ------------------------------------------------------------ attributes
    def attr_get(self, name: str) -> str:
        return self.rpc("attr.get", {"name": name}).get()["value"]

    def attr_set(self, name: str, value: str) -> None:
        self.rpc("attr.set", {"name": name, "value": str(value)}).get()

    def get_rank(self) -> int:
        return int(self.attr_get("rank"))

    def conf_get(self, key: str | None = None, default: Any = None, update: bool = False) -> Any:
        """The instance configuration (``config.get``), fetched once and cached;
        ``key`` is a dotted path (``"tbon.topo"``), ``default`` its value when unset;
        ``update=True`` fetches it again."""
        if update or self._conf is None:
            self._conf = self.rpc("config.get").get()
        if key is None:
            return self._conf
        node: Any = self._conf
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def log(self, level: int, fmt: str, *args) -> None:
        self.rpc("log.append", {"level": level, "message": fmt % args if args else fmt,
                                "appname": os.path.basename(os.sys.argv[0]) or "python"},
                 flags=RPC_NORESPONSE)

    # -------------------------------------------------------------- watchers
    def msg_watcher_create(self, callback: Callable, type_mask: int = 0x0F, topic_glob: str = "*",
                           args: Any = None, match_tag: int = 0) -> MessageWatcher:
        return MessageWatcher(self, callback, type_mask, topic_glob, args)

    def timer_watcher_create(self, after: float, callback: Callable, repeat: float = 0.0,
                             args: Any = None) -> TimerWatcher:
        return TimerWatcher(self, after, callback, repeat, args)

    def fd_watcher_create(self, fd: int, callback: Callable, events: int = 1,
                          args: Any = None) -> FDWatcher:
        return FDWatcher(self, fd, events, callback, args)

    def signal_watcher_create(self, signum: int, callback: Callable, args: Any = None) -> SignalWatcher:
        return SignalWatcher(self, signum, callback, args)

    # ----------------------------------------------------------------- misc
    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._sel.close()
            except Exception:  # noqa: BLE001
                pass
            self.sock.close()
            if self._relay is not None:
                self._relay.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.sock.close()
        except Exception:  # noqa: BLE001
            pass

