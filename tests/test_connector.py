"""The local connector: framing, peer credentials, and bad input from clients.

The first tests drive core/broker/local.py's LocalClient directly with bytes split
at arbitrary points; the rest talk to a real broker over its unix socket.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
from types import SimpleNamespace

import flux
import pytest
from flux.core.broker.local import LocalClient
from flux.core.message import (
    EVENT,
    FLAG_NORESPONSE,
    FLAG_ROUTE,
    FLAG_STREAMING,
    FLAG_TOPIC,
    PREAMBLE_SIZE,
    REQUEST,
    RESPONSE,
    ROLE_LOCAL,
    ROLE_OWNER,
    ROLE_USER,
    Message,
    decode_stream_body,
    parse_preamble,
)
from hypothesis import given, settings
from hypothesis import strategies as st

MAGIC = struct.pack("=I", 0xFFEE0012)


# --------------------------------------------------------------- unit level
class FakeTransport:
    def __init__(self, sock):
        self.sock = sock
        self.out = bytearray()
        self.aborted = False

    def get_extra_info(self, name):
        return self.sock if name == "socket" else None

    def write(self, data):
        self.out += data

    def get_write_buffer_size(self):
        return 0

    def abort(self):
        self.aborted = True

    close = abort


class FakeBroker:
    rank = 0

    def __init__(self):
        self.requests: list[Message] = []
        self.logs: list[str] = []

    def new_client_id(self):
        return "c0.1"

    def log(self, level, text):
        self.logs.append(text)

    def handle_request(self, msg):
        self.requests.append(msg)

    def client_connected(self, c):
        pass

    def client_disconnected(self, c):
        pass


def replies(out: bytes) -> list[Message]:
    """Decode what the connector wrote back (after the status byte)."""
    assert out[:1] == b"\0"
    msgs, pos = [], 1
    while pos < len(out):
        n = parse_preamble(out[pos:pos + PREAMBLE_SIZE])
        msgs.append(decode_stream_body(out[pos + PREAMBLE_SIZE:pos + PREAMBLE_SIZE + n]))
        pos += PREAMBLE_SIZE + n
    return msgs


def make_client(maxsize: int):
    broker = FakeBroker()
    conn = SimpleNamespace(broker=broker, max_message_size=maxsize, role_for=lambda uid: ROLE_OWNER)
    client = LocalClient(conn)
    a, b = socket.socketpair()
    t = FakeTransport(a)
    client.connection_made(t)
    return client, broker, t, (a, b)


def malformed_request(tag: int) -> bytes:
    """A well-delimited body whose PROTO says TOPIC but that has no topic frame."""
    proto = bytes([0x8E, 1, REQUEST, FLAG_TOPIC | FLAG_ROUTE]) + struct.pack(">IIII", 0, 0, 0, tag)
    body = b"\x00" + bytes([len(proto)]) + proto
    return MAGIC + struct.pack(">I", len(body)) + body


@st.composite
def traffic(draw):
    """A stream of valid, oversized and malformed messages, cut into random chunks."""
    kinds = draw(st.lists(st.sampled_from(["ok", "big", "bad", "bigevent", "bignoresp"]),
                          min_size=1, max_size=8))
    wire, expect_reqs, expect_replies = b"", [], []
    for i, kind in enumerate(kinds):
        tag = i + 1
        if kind == "ok":
            m = Message.request(f"svc.m{i}", {"i": i}, matchtag=tag)
            expect_reqs.append((m.topic, tag))
        elif kind == "big":
            m = Message.request(f"big.m{i}", {"pad": "x" * 3000}, matchtag=tag)
            expect_replies.append((f"big.m{i}", tag, errno.EFBIG))
        elif kind == "bignoresp":
            m = Message.request(f"big.m{i}", {"pad": "x" * 3000}, flags=FLAG_NORESPONSE)
        elif kind == "bigevent":
            m = Message.event(f"ev.m{i}", {"pad": "y" * 3000})
        else:
            wire += malformed_request(tag)
            expect_replies.append(("", tag, errno.EPROTO))
            continue
        wire += m.encode_stream()
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(wire)), max_size=12)))
    chunks, prev = [], 0
    for c in cuts + [len(wire)]:
        chunks.append(wire[prev:c])
        prev = c
    return chunks, expect_reqs, expect_replies


@settings(max_examples=200, deadline=None)
@given(traffic())
def test_connector_framing_survives_any_chunking(case):
    """Whatever the read boundaries: valid requests are routed in order, oversized
    requests get EFBIG and malformed ones EPROTO (with their matchtag), and the
    stream stays in sync."""
    chunks, expect_reqs, expect_replies = case
    client, broker, t, socks = make_client(maxsize=2048)
    try:
        for c in chunks:
            if c:
                client.data_received(c)
        assert [(m.topic, m.matchtag) for m in broker.requests] == expect_reqs
        assert all(m.route == ["c0.1"] and m.userid == os.getuid() for m in broker.requests)
        got = [(m.topic, m.matchtag, m.errnum) for m in replies(bytes(t.out))]
        assert got == expect_replies
        assert not t.aborted
    finally:
        for s in socks:
            s.close()


def test_connector_drops_client_on_bad_magic():
    client, broker, t, socks = make_client(maxsize=4096)
    try:
        client.data_received(b"\xff\xee\x00\x12" + b"\x00\x00\x00\x04abcd")  # RFC byte order
        assert t.aborted
        assert any("bad stream magic" in line for line in broker.logs)
        assert broker.requests == []
    finally:
        for s in socks:
            s.close()


def test_oversized_reply_names_topic_and_limit():
    client, broker, t, socks = make_client(maxsize=100)
    try:
        m = Message.request("kvs.put", {"v": "z" * 500}, matchtag=9)
        client.data_received(m.encode_stream())
        (r,) = replies(bytes(t.out))
        assert (r.type, r.topic, r.matchtag, r.errnum) == (RESPONSE, "kvs.put", 9, errno.EFBIG)
        assert "exceeds the broker's limit of 100 bytes" in r.errstr()
        assert "broker.max-message-size" in r.errstr()
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------- real broker
def raw_connect(uri: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(uri[len("local://"):])
    s.settimeout(10)
    assert s.recv(1) == b"\0"  # the status byte: welcome
    return s


def recv_msg(s: socket.socket) -> Message:
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    n = parse_preamble(exact(PREAMBLE_SIZE))
    return decode_stream_body(exact(n))


@pytest.fixture(scope="module")
def small_limit():
    """One broker whose message size limit is small (shared: tests only read)."""
    import conftest

    inst = conftest.Instance(1, setattrs=["broker.max-message-size=4096"])
    yield inst
    inst.stop()


def test_status_byte_and_raw_request(small_limit):
    s = raw_connect(small_limit.uri)
    s.sendall(Message.request("attr.get", {"name": "rank"}, matchtag=3).encode_stream())
    r = recv_msg(s)
    assert (r.type, r.topic, r.matchtag, r.errnum) == (RESPONSE, "attr.get", 3, 0)
    assert r.data()["value"] == "0"
    s.close()


def test_oversized_request_gets_efbig_and_connection_survives(small_limit):
    h = small_limit.handle()
    with pytest.raises(OSError) as ei:
        h.rpc("attr.get", {"name": "x" * 5000}).wait_for(10).get()
    assert ei.value.errno == errno.EFBIG
    assert "exceeds the broker's limit of 4096 bytes" in ei.value.strerror
    # the same connection still works, and a payload under the limit passes
    assert h.attr_get("rank") == "0"
    assert h.rpc("broker.ping", {"pad": "p" * 3000}).get()["pad"] == "p" * 3000


def test_bad_magic_drops_only_that_client(small_limit):
    s = raw_connect(small_limit.uri)
    s.sendall(b"\x00" * 8 + b"garbage")
    assert s.recv(100) == b""  # dropped
    s.close()
    assert small_limit.handle().attr_get("rank") == "0"
    log = small_limit.flux("dmesg").stdout
    assert "protocol error: bad stream magic" in log


def test_malformed_body_answers_eproto_and_stream_stays_in_sync(small_limit):
    s = raw_connect(small_limit.uri)
    s.sendall(malformed_request(77))
    r = recv_msg(s)
    assert (r.matchtag, r.errnum) == (77, errno.EPROTO)
    assert "TOPIC flag set but no topic frame" in r.errstr()
    # a body without any PROTO frame cannot be answered: logged and dropped
    s.sendall(MAGIC + struct.pack(">I", 4) + b"\x03abc")
    s.sendall(Message.request("broker.ping", {"n": 1}, matchtag=78).encode_stream())
    r = recv_msg(s)
    assert (r.matchtag, r.errnum, r.data()["n"]) == (78, 0, 1)
    s.close()


def test_client_may_not_inject_responses_or_raw_events(small_limit):
    """A client that offers no service cannot answer someone else's RPC."""
    victim = small_limit.handle()
    assert victim.rpc("service.add", {"service": "slowsvc"}).get() == {}
    waiter = small_limit.handle()
    f = waiter.rpc("slowsvc.wait", {})
    req = victim.request_recv(timeout=10)
    # a third client forges the response, copying route and matchtag it guessed
    s = raw_connect(small_limit.uri)
    forged = Message(RESPONSE, "slowsvc.wait", {"forged": True}, matchtag=req.matchtag,
                     route=list(req.core.route))
    s.sendall(forged.encode_stream())
    s.sendall(Message.event("fake.event", {}).encode_stream())
    # the forger's connection still works (ping), the real answer is the one received
    s.sendall(Message.request("broker.ping", {}, matchtag=5).encode_stream())
    assert recv_msg(s).matchtag == 5
    victim.respond(req, {"real": True})
    assert f.wait_for(10).get() == {"real": True}
    s.close()
    log = small_limit.flux("dmesg").stdout
    assert "registered no service; dropped" in log
    assert "sent a raw event 'fake.event'" in log


@pytest.mark.parametrize("topic,payload,errnum,text", [
    ("attr.get", b"{not json\0", errno.EPROTO, "payload of 'attr.get' is not valid JSON"),
    ("attr.get", [1, 2], errno.EPROTO, "attr.get: payload must be a JSON object"),
    ("attr.get", {"name": 5}, errno.EPROTO, "attr.get: field 'name' must be str"),
    ("attr.get", {}, errno.EPROTO, "attr.get: missing required field 'name'"),
    ("attr.get", {"name": "no-such-attr"}, errno.ENOENT, "attribute no-such-attr is not set"),
    ("attr.set", {"name": "log-level", "value": 5}, errno.EPROTO, "field 'value' must be a string"),
    ("attr.set", {"name": "log-level", "value": "loud"}, errno.EINVAL, "unknown log level 'loud'"),
    ("attr.set", {"name": "rank", "value": "3"}, errno.EPERM, "attribute rank is read-only"),
    ("event.subscribe", {"topic": []}, errno.EPROTO, "field 'topic' must be str"),
    ("event.publish", {"topic": ""}, errno.EINVAL, "topic must not be empty"),
    ("event.publish", {"topic": "a", "flags": "x"}, errno.EPROTO, "flags must be an integer"),
    ("log.append", {"message": 5}, errno.EPROTO, "field 'message' must be a string"),
    ("log.append", {"message": "m", "level": "loud"}, errno.EINVAL, "unknown log level"),
    ("log.append", {"message": "m", "level": 99}, errno.EINVAL, "level 99 is not 0-7"),
    ("log.append", {"message": "m", "timestamp": "now"}, errno.EPROTO, "'timestamp' must be a number"),
    ("log.append", {"message": "m", "rank": "zero"}, errno.EPROTO, "'rank' must be an integer"),
    ("service.add", {"service": "a.b"}, errno.EINVAL, "invalid service name 'a.b'"),
    ("service.remove", {"service": "never"}, errno.ENOENT, "not registered by this client"),
    ("overlay.topology", {"rank": -1}, errno.EINVAL, "rank must be an integer 0-0"),
    ("overlay.topology", {"rank": "x"}, errno.EPROTO, "rank must be an integer"),
    ("broker.shutdown", {"exitcode": "x"}, errno.EPROTO, "exitcode must be an integer"),
    ("rexec.kill", {"pid": 1, "signum": 9}, errno.ESRCH, "no process with pid 1"),
    ("nosuch.method", {}, errno.ENOSYS, "No service matching nosuch.method is registered"),
    ("broker.nosuchmethod", {}, errno.ENOSYS, "No service matching broker.nosuchmethod is registered"),
])
def test_wrong_payloads_get_clear_errors(small_limit, topic, payload, errnum, text):
    h = small_limit.handle()
    with pytest.raises(OSError) as ei:
        h.rpc(topic, payload).wait_for(10).get()
    assert ei.value.errno == errnum, ei.value.strerror
    assert text in ei.value.strerror
    assert h.rpc("broker.ping", {}).get()["rank"] == 0  # and the broker is fine


def test_streaming_method_without_streaming_flag_is_eproto(small_limit):
    h = small_limit.handle()
    with pytest.raises(OSError) as ei:
        h.rpc("rexec.exec", {"cmd": {"cmdline": ["true"]}}).get()
    assert ei.value.errno == errno.EPROTO
    assert "requires the streaming flag" in ei.value.strerror
    # the bad log line a wrong-typed log.append would have left does not break dmesg
    r = small_limit.flux("dmesg")
    assert r.returncode == 0, r.stderr


def test_disconnect_mid_stream_is_a_clean_drop(small_limit):
    """A client that goes away in the middle of a stream (dmesg --follow) is
    forgotten; the broker keeps serving everyone else."""
    h = small_limit.handle()
    f = h.rpc("log.dmesg", {"follow": True}, flags=flux.constants.FLUX_RPC_STREAMING)
    f.wait_for(10)
    h.close()
    other = small_limit.handle()
    for i in range(3):
        other.rpc("log.append", {"message": f"after disconnect {i}"}).get()
    assert "after disconnect 2" in small_limit.flux("dmesg").stdout


def wait_pid_exit(pid: int, timeout: float) -> bool:
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def test_disconnect_reaches_remote_rank_and_kills_its_processes(make_instance):
    """rexec on rank 2 of a tree: when the client disconnects, rank 2's rexec hears
    `rexec.disconnect` and kills what that client started there."""
    inst = make_instance(3)
    h = inst.handle()
    f = h.rpc("rexec.exec", {"cmd": {"cmdline": ["sleep", "300"]}}, nodeid=2,
              flags=flux.constants.FLUX_RPC_STREAMING)
    started = f.wait_for(10).get()
    assert started["type"] == "started"
    pid = started["pid"]
    fd = os.pidfd_open(pid)
    h.close()
    ready, _, _ = select.select([fd], [], [], 10)
    os.close(fd)
    assert ready, "the remote process outlived its client"


def test_peer_credentials_are_stamped_and_owner_may_forge(instance, monkeypatch):
    server = instance.handle()
    server.rpc("service.add", {"service": "who"}).get()
    client = instance.handle()
    f = client.rpc("who.am-i", {})
    req = server.request_recv(timeout=10)
    assert (req.userid, req.rolemask) == (os.getuid(), ROLE_OWNER | ROLE_LOCAL)
    server.respond(req, {})
    f.get()
    # the owner may act with any credential (FLUX_HANDLE_USERID/ROLEMASK); LOCAL is added
    monkeypatch.setenv("FLUX_HANDLE_USERID", "4242")
    monkeypatch.setenv("FLUX_HANDLE_ROLEMASK", str(ROLE_USER))
    forger = instance.handle()
    f = forger.rpc("who.am-i", {})
    req = server.request_recv(timeout=10)
    assert (req.userid, req.rolemask) == (4242, ROLE_USER | ROLE_LOCAL)
    server.respond(req, {})
    f.get()


GUEST = 65534  # nobody


def _guest_client(path: str, wfd: int) -> None:
    """In a forked child running as `nobody`: try to forge owner credentials, then
    try an owner-only RPC; report what came back through the pipe."""
    import json

    out = {}
    try:
        os.setgid(GUEST)
        os.setuid(GUEST)
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(10)
        out["status"] = s.recv(1)[0]
        m = Message.request("who.guest", {}, matchtag=1)
        m.userid, m.rolemask = 0, ROLE_OWNER  # forged: must be replaced by the broker
        s.sendall(m.encode_stream())
        r = recv_msg(s)
        out["who"] = [r.errnum, r.data() if not r.errnum else r.errstr()]
        s.sendall(Message.request("attr.set", {"name": "log-level", "value": "3"},
                                  matchtag=2).encode_stream())
        r = recv_msg(s)
        out["attr.set"] = [r.errnum, r.errstr()]
        s.sendall(Message.request("service.add", {"service": "stolen"}, matchtag=3).encode_stream())
        r = recv_msg(s)
        out["service.add"] = [r.errnum, r.errstr()]
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out["error"] = repr(exc)
    os.write(wfd, json.dumps(out).encode())
    os._exit(0)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to become a guest user")
def test_guest_gets_its_own_uid_and_user_role(make_instance):
    import json

    inst = make_instance(1, conf=["access.allow-guest-user=true"])
    os.chmod(inst.rundir, 0o755)  # let the guest reach the socket
    server = inst.handle()
    server.rpc("service.add", {"service": "who"}).get()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _guest_client(inst.uri[len("local://"):], w)
    os.close(w)
    req = server.request_recv(timeout=10)
    assert (req.userid, req.rolemask) == (GUEST, ROLE_USER | ROLE_LOCAL)
    server.respond(req, {"seen": [req.userid, req.rolemask]})
    with os.fdopen(r) as f:
        out = json.loads(f.read())
    os.waitpid(pid, 0)
    assert "error" not in out, out
    assert out["status"] == 0
    assert out["who"] == [0, {"seen": [GUEST, ROLE_USER | ROLE_LOCAL]}]
    assert out["attr.set"] == [errno.EPERM, "attr.set is restricted to the instance owner"]
    assert out["service.add"][0] == errno.EPERM
    assert "guests may only register services named '65534-*'" in out["service.add"][1]


def test_event_from_connector_reaches_subscriber_with_flag_checks(small_limit):
    """Sanity for the socket path of events: type EVENT, no route."""
    h = small_limit.handle()
    h.event_subscribe("conn.test")
    h.event_send("conn.test.a", {"k": 1})
    ev = h.event_recv(timeout=10)
    assert (ev.type, ev.topic, ev.payload) == (EVENT, "conn.test.a", {"k": 1})
    assert ev.core.route == []
    assert not ev.core.flags & FLAG_STREAMING
