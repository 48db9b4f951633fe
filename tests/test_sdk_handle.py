"""flux.Flux (sdk/handle.py) and its futures (sdk/future.py) against a real broker."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import flux
import pytest
from flux.constants import FLUX_MSGTYPE_REQUEST, FLUX_RPC_NORESPONSE, FLUX_RPC_STREAMING


@pytest.fixture(scope="module")
def inst():
    import conftest

    i = conftest.Instance(2)
    yield i
    i.stop()


# ------------------------------------------------------------------ connect
def test_bare_import_exposes_constants():
    code = ("import flux; c = flux.constants; "
            "print(c.FLUX_NODEID_ANY, c.FLUX_NODEID_UPSTREAM, c.FLUX_RPC_STREAMING, "
            "c.FLUX_MSGTYPE_EVENT, c.FLUX_ROLE_OWNER)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(0xFFFFFFFF), str(0xFFFFFFFE), "2", "4", "1"]


def test_url_from_argument_bytes_and_environment(inst, monkeypatch):
    assert flux.Flux(inst.uri).attr_get("rank") == "0"
    assert flux.Flux(inst.uri.encode()).attr_get("rank") == "0"
    monkeypatch.setenv("FLUX_URI", inst.uri)
    h = flux.Flux()
    assert h.url == inst.uri and h.get_rank() == 0


def test_connect_failures_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("FLUX_URI", raising=False)
    with pytest.raises(OSError) as ei:
        flux.Flux()  # no FLUX_URI: the system instance, not running here
    assert ei.value.errno == errno.ENOENT
    assert ei.value.strerror.startswith("Unable to connect to Flux at local:///run/flux/local")
    with pytest.raises(OSError) as ei:
        flux.Flux(f"local://{tmp_path}/absent")
    assert ei.value.errno == errno.ENOENT and str(tmp_path) in ei.value.strerror
    (tmp_path / "plainfile").write_text("not a socket")
    with pytest.raises(OSError) as ei:
        flux.Flux(f"local://{tmp_path}/plainfile")
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(OSError) as ei:
        flux.Flux("tcp://example.com:1")
    assert ei.value.errno == errno.EINVAL and "unsupported URI scheme" in ei.value.strerror


# ---------------------------------------------------------------------- RPC
def test_rpc_get_payload_and_nodeid(inst):
    h = flux.Flux(inst.uri)
    f = h.rpc("broker.ping", {"seq": 7}, nodeid=1)
    assert f.get() == {"seq": 7, "rank": 1, "route": f.get()["route"]}
    assert f.get()["route"].split("!")[1:] == ["0"]
    assert h.rpc("attr.get", {"name": "size"}).get() == {"value": "2", "flags": 1}
    with pytest.raises(OSError) as ei:
        h.rpc("no.such", {}).get()
    assert ei.value.errno == errno.ENOSYS


def test_wait_for_times_out_then_value_arrives(inst):
    srv, cli = flux.Flux(inst.uri), flux.Flux(inst.uri)
    srv.service_register("slow").get()
    f = cli.rpc("slow.op", {"x": 1})
    with pytest.raises(TimeoutError) as ei:
        f.wait_for(0.1)
    assert ei.value.errno == errno.ETIMEDOUT
    assert not f.is_ready()
    req = srv.request_recv(timeout=10)
    assert req.payload == {"x": 1} and req.type == FLUX_MSGTYPE_REQUEST
    srv.respond(req, {"y": 2})
    assert f.wait_for(10) is f and f.get() == {"y": 2}
    srv.service_unregister("slow").get()


def test_error_response_from_a_client_service(inst):
    srv, cli = flux.Flux(inst.uri), flux.Flux(inst.uri)
    srv.service_register("failing").get()
    f = cli.rpc("failing.op", {})
    srv.respond_error(srv.request_recv(timeout=10), errno.EPERM, "not today")
    with pytest.raises(OSError) as ei:
        f.get()
    assert (ei.value.errno, ei.value.strerror) == (errno.EPERM, "not today")


def test_then_and_reactor_run(inst):
    h = flux.Flux(inst.uri)
    seen = []

    def cb(f, tag):
        seen.append((tag, f.get()["rank"]))

    for r in (0, 1):
        h.rpc("broker.ping", {}, nodeid=r).then(cb, f"r{r}")
    assert h.reactor_run() == 0  # returns once no future is pending
    assert sorted(seen) == [("r0", 0), ("r1", 1)]


def test_streaming_rpc_with_then_and_reset(inst):
    h = flux.Flux(inst.uri)
    for i in range(3):
        h.rpc("log.append", {"message": f"sdk-stream-{i}"}).get()
    got = []

    def cb(f):
        try:
            got.append(f.get()["message"])
        except OSError as exc:
            got.append(exc.errno)
        f.reset()

    h.rpc("log.dmesg", {}, flags=FLUX_RPC_STREAMING).then(cb)
    h.reactor_run()
    assert got[-1] == errno.ENODATA  # the end of the stream
    assert got[-4:-1] == ["sdk-stream-0", "sdk-stream-1", "sdk-stream-2"]


def test_streaming_rpc_synchronously(inst):
    h = flux.Flux(inst.uri)
    f = h.rpc("rexec.exec", {"cmd": {"cmdline": ["echo", "hi"]}}, nodeid=1, flags=FLUX_RPC_STREAMING)
    types = []
    while True:
        try:
            resp = f.get()
        except OSError as exc:
            assert exc.errno == errno.ENODATA
            break
        types.append(resp["type"])
        if resp["type"] == "output" and resp["io"].get("data"):
            assert resp["io"] == {"stream": "stdout", "rank": "1", "data": "hi\n"}
        if resp["type"] == "finished":
            assert resp["status"] == 0
        f.reset()
    assert types[0] == "started" and types[-1] == "finished" and "output" in types


def test_noresponse_rpc_is_fulfilled_at_once(inst):
    h = flux.Flux(inst.uri)
    f = h.rpc("log.append", {"message": "fire-and-forget"}, flags=FLUX_RPC_NORESPONSE)
    assert f.is_ready()
    entries = h.rpc("log.dmesg", {}).get()["entries"]
    assert any(e["message"] == "fire-and-forget" for e in entries)


def test_log_helper(inst):
    h = flux.Flux(inst.uri)
    h.log(3, "sdk says %s", "hello")
    entries = h.rpc("log.dmesg", {}).get()["entries"]
    assert any(e["message"] == "sdk says hello" and e["level"] == 3 for e in entries)


def test_pending_rpc_fails_when_broker_goes_away(make_instance):
    inst = make_instance(1)
    srv, cli = inst.handle(), inst.handle()
    srv.service_register("never").get()
    f = cli.rpc("never.answers", {})
    srv.request_recv(timeout=10)
    assert inst.stop(timeout=30) == 0
    with pytest.raises(OSError) as ei:
        f.wait_for(10).get()
    assert ei.value.errno == errno.ECONNRESET
    with pytest.raises(OSError) as ei:
        cli.rpc("broker.ping", {})
    assert ei.value.errno in (errno.EBADF, errno.ECONNRESET)


# ------------------------------------------------------------------- events
def test_event_subscribe_send_recv(inst):
    h = flux.Flux(inst.uri)
    h.event_subscribe("sdk.ev")
    seq = h.event_send("sdk.ev.one", {"a": 1})
    h.event_send("sdk.ev.raw", b"\x00raw bytes")
    ev = h.event_recv()
    assert (ev.topic, ev.payload, ev.seq) == ("sdk.ev.one", {"a": 1}, seq)
    ev = h.event_recv()
    assert ev.topic == "sdk.ev.raw" and ev.core.payload == b"\x00raw bytes"
    with pytest.raises(TimeoutError):
        h.event_recv(timeout=0.1)


def test_event_recv_topic_filter_keeps_other_events(inst):
    h = flux.Flux(inst.uri)
    h.event_subscribe("filt.")
    h.event_send("filt.a")
    h.event_send("filt.b")
    assert h.event_recv(topic="filt.b").topic == "filt.b"
    assert h.event_recv(topic="filt.").topic == "filt.a"  # kept, not lost


def test_event_from_other_rank_handle(inst):
    h0 = flux.Flux(inst.uri)
    uri1 = h0.rpc("attr.get", {"name": "local-uri"}, nodeid=1).get()["value"]
    h1 = flux.Flux(uri1)
    assert h1.get_rank() == 1
    h0.event_subscribe("cross.")
    h1.event_send("cross.rank1", {"from": 1})
    assert h0.event_recv().payload == {"from": 1}


# ------------------------------------------------------------------ reactor
def test_msg_watcher_serves_requests_in_the_reactor(inst):
    srv, cli = flux.Flux(inst.uri), flux.Flux(inst.uri)
    srv.service_register("calc").get()
    f = cli.rpc("calc.add", {"a": 2, "b": 3})

    def on_request(h, watcher, msg, arg):
        h.respond(msg, {"sum": msg.payload["a"] + msg.payload["b"], "arg": arg})
        watcher.stop()

    w = srv.msg_watcher_create(on_request, FLUX_MSGTYPE_REQUEST, "calc.*", args="x")
    w.start()
    srv.reactor_run()
    assert f.get() == {"sum": 5, "arg": "x"}


def test_timer_watcher_and_reactor_stop(inst):
    h = flux.Flux(inst.uri)
    fired = []

    def tick(handle, watcher, revents, arg):
        fired.append(arg)
        if len(fired) == 3:
            handle.reactor_stop()

    w = h.timer_watcher_create(0.01, tick, repeat=0.01, args="t").start()
    h.reactor_run()
    w.stop()
    assert fired == ["t", "t", "t"]


def test_uri_env_of_initial_program_matches(inst):
    # FLUX_URI given to the initial program is rank 0's local-uri
    assert inst.uri == flux.Flux(inst.uri).attr_get("local-uri")
    assert os.path.exists(inst.uri[len("local://"):])
