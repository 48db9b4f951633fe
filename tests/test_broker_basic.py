import errno
import os

import flux
import pytest
from flux.constants import FLUX_NODEID_ANY


def test_attr_get_and_rank(instance):
    h = instance.handle()
    assert h.attr_get("rank") == "0"
    assert h.attr_get("size") == "1"
    assert h.attr_get("local-uri") == instance.uri
    major, minor, patch = h.attr_get("version").split(".")
    assert (int(major), int(minor)) >= (0, 50)


def test_unknown_service_is_enosys(instance):
    h = instance.handle()
    with pytest.raises(OSError) as ei:
        h.rpc("nosuch.method", {}).get()
    assert ei.value.errno == errno.ENOSYS
    assert ei.value.strerror == "No service matching nosuch.method is registered"


def test_connect_failure_is_enoent(tmp_path):
    with pytest.raises(OSError) as ei:
        flux.Flux(f"local://{tmp_path}/nothing-here")
    assert ei.value.errno == errno.ENOENT
    assert "Unable to connect" in ei.value.strerror


def test_ping_every_rank_of_tree(make_instance):
    inst = make_instance(5)
    h = inst.handle()
    for rank in range(5):
        resp = h.rpc("broker.ping", {"seq": rank}, nodeid=rank).get()
        assert resp["rank"] == rank and resp["seq"] == rank
    with pytest.raises(OSError) as ei:
        h.rpc("broker.ping", {}, nodeid=9).get()
    assert ei.value.errno == errno.EHOSTUNREACH
    assert h.rpc("broker.ping", {}, nodeid=FLUX_NODEID_ANY).get()["rank"] == 0


# ---------------------------------------------------------------------------
# A 7-broker, 3-level tree (kary:2) shared by the read-mostly tests below:
#            0
#       1         2
#     3   4     5   6
TREE_SIZE = 7


@pytest.fixture(scope="module")
def tree():
    import conftest

    inst = conftest.Instance(TREE_SIZE, setattrs=["heartbeat.period=0.3s"])
    inst.uris = [inst.handle().rpc("attr.get", {"name": "local-uri"}, nodeid=r).get()["value"]
                 for r in range(TREE_SIZE)]
    yield inst
    inst.stop()


def at(tree, rank: int) -> flux.Flux:
    """A handle connected to broker `rank` itself."""
    return flux.Flux(tree.uris[rank])


def test_attributes_of_every_rank(tree):
    h = tree.handle()
    rundirs, uris = set(), set()
    for r in range(TREE_SIZE):
        def get(name, r=r):
            return h.rpc("attr.get", {"name": name}, nodeid=r).get()["value"]

        assert get("rank") == str(r) and get("size") == str(TREE_SIZE)
        assert get("instance-level") == "0"
        assert get("version") == h.attr_get("version")
        assert get("tbon.topo") == "kary:2"
        assert get("tbon.level") == str({0: 0, 1: 1, 2: 1}.get(r, 2))
        pid = int(get("broker.pid"))
        os.kill(pid, 0)  # a live process
        assert get("log-level") == "7" and get("log-stderr-level") == "3"
        uri = get("local-uri")
        assert uri.startswith("local://") and os.path.exists(uri[len("local://"):])
        uris.add(uri)
        rundirs.add(get("rundir"))
    assert len(uris) == TREE_SIZE  # one socket per broker
    assert rundirs == {tree.rundir}
    assert tree.uris[0] == tree.uri


def test_attr_list_and_readonly(tree):
    h = tree.handle()
    names = h.rpc("attr.list").get()["names"]
    for n in ("rank", "size", "local-uri", "instance-level", "rundir", "version", "broker.pid",
              "log-level", "log-stderr-level", "log-forward-level", "log-ring-size",
              "hostlist", "tbon.topo", "jobid-path"):
        assert n in names
    for n in ("rank", "size", "rundir", "local-uri", "version", "broker.pid", "tbon.topo"):
        with pytest.raises(OSError) as ei:
            h.attr_set(n, "1")
        assert ei.value.errno == errno.EPERM and "read-only" in ei.value.strerror
    with pytest.raises(OSError) as ei:
        h.attr_get("parent-uri")  # a top-level instance has no parent
    assert ei.value.errno == errno.ENOENT


def test_attr_set_on_a_remote_rank(tree):
    h = tree.handle()
    h.rpc("attr.set", {"name": "log-stderr-level", "value": "2"}, nodeid=4).get()
    get = h.rpc("attr.get", {"name": "log-stderr-level"}, nodeid=4).get()
    assert get["value"] == "2"
    assert h.attr_get("log-stderr-level") == "3"  # rank 0 unchanged
    h.rpc("attr.set", {"name": "log-stderr-level", "value": "3"}, nodeid=4).get()


def test_requests_routed_down_and_up_the_tree(tree):
    """From rank 3 to rank 6: up 3->1->0, down 0->2->6; the route records each hop."""
    h = at(tree, 3)
    resp = h.rpc("broker.ping", {"seq": 1}, nodeid=6).get()
    assert resp["rank"] == 6 and resp["seq"] == 1
    hops = resp["route"].split("!")
    assert hops[0].startswith("c3.") and hops[1:] == ["3", "1", "0", "2"]
    # ANY: the nearest broker with the service answers (every broker has `broker`)
    assert h.rpc("broker.ping", {}).get()["rank"] == 3
    # event.publish exists only on rank 0: ANY from a leaf climbs to it
    assert h.rpc("event.publish", {"topic": "route.test"}).get()["seq"] > 0


def test_upstream_skips_the_local_broker(tree):
    h = at(tree, 4)
    up = flux.constants.FLUX_NODEID_UPSTREAM
    assert h.rpc("broker.ping", {}, nodeid=up).get()["rank"] == 1  # rank 4's parent
    with pytest.raises(OSError) as ei:
        tree.handle().rpc("broker.ping", {}, nodeid=up).get()  # rank 0 has no upstream
    assert ei.value.errno == errno.ENOSYS


def test_unknown_service_from_a_leaf_and_on_a_rank(tree):
    h = at(tree, 6)
    with pytest.raises(OSError) as ei:
        h.rpc("nosuch.thing", {}).get()  # travels 6 -> 2 -> 0, answered by rank 0
    assert ei.value.errno == errno.ENOSYS
    assert ei.value.strerror == "No service matching nosuch.thing is registered"
    with pytest.raises(OSError) as ei:
        h.rpc("nosuch.thing", {}, nodeid=3).get()
    assert ei.value.errno == errno.ENOSYS
    with pytest.raises(OSError) as ei:
        h.rpc("broker.ping", {}, nodeid=TREE_SIZE).get()
    assert ei.value.errno == errno.EHOSTUNREACH
    assert f"rank {TREE_SIZE} is not in this instance" in ei.value.strerror


def test_client_service_reached_from_other_ranks(tree):
    """A service a client registers on rank 4 is reached with nodeid=4 from anywhere
    (routed up then down); with ANY only from rank 4's own subtree path upward."""
    srv = at(tree, 4)
    srv.service_register("svc4").get()
    futs = [(r, at(tree, r).rpc("svc4.hello", {"from": r}, nodeid=4)) for r in (0, 3, 6, 4)]
    for _ in futs:
        req = srv.request_recv(timeout=10)
        assert req.topic == "svc4.hello"
        srv.respond(req, {"echo": req.payload["from"]})
    for r, f in futs:
        assert f.wait_for(10).get() == {"echo": r}
    # registered on rank 0: ANY from a leaf climbs to it
    root = tree.handle()
    root.service_register("svc0").get()
    f = at(tree, 5).rpc("svc0.x", {"n": 5})
    req = root.request_recv(timeout=10)
    root.respond(req, {"n": req.payload["n"] + 1})
    assert f.wait_for(10).get() == {"n": 6}
    # the same name twice is EEXIST; gone with its client
    with pytest.raises(OSError) as ei:
        tree.handle().service_register("svc0").get()
    assert ei.value.errno == errno.EEXIST
    root.close()
    with pytest.raises(OSError) as ei:
        at(tree, 0).rpc("svc0.x", {}).wait_for(10).get()
    assert ei.value.errno == errno.ENOSYS


def test_events_reach_every_rank_exactly_once(tree):
    hs = [at(tree, r) for r in range(TREE_SIZE)]
    for h in hs:
        h.event_subscribe("once.")
    seq1 = at(tree, 5).event_send("once.a", {"n": 1})  # published from a leaf
    seq2 = tree.handle().event_send("once.b", {"n": 2})
    assert seq2 > seq1 > 0
    for h in hs:
        a = h.event_recv(timeout=10)
        b = h.event_recv(timeout=10)  # events are ordered: a duplicate would come first
        assert (a.topic, a.payload, a.seq) == ("once.a", {"n": 1}, seq1)
        assert (b.topic, b.payload, b.seq) == ("once.b", {"n": 2}, seq2)
    for h in hs:
        with pytest.raises(TimeoutError):
            h.event_recv(topic="once.", timeout=0.2)  # and nothing else came


def test_heartbeat_reaches_a_leaf(tree):
    h = at(tree, 6)
    h.event_subscribe("heartbeat.pulse")
    a = h.event_recv(timeout=10)
    b = h.event_recv(timeout=10)
    assert a.topic == b.topic == "heartbeat.pulse"
    assert b.seq > a.seq and b.payload["epoch"] > a.payload["epoch"]


def test_unsubscribe_stops_events(tree):
    h = at(tree, 2)
    h.event_subscribe("unsub.")
    h.event_send("unsub.one")
    assert h.event_recv(timeout=10).topic == "unsub.one"
    h.event_unsubscribe("unsub.")
    h.event_subscribe("unsub.marker")
    h.event_send("unsub.two")
    h.event_send("unsub.marker")
    assert h.event_recv(timeout=10).topic == "unsub.marker"  # unsub.two never came


def test_stream_ends_with_enodata(tree):
    h = tree.handle()
    h.rpc("log.append", {"message": "stream-end-marker"}).get()
    f = h.rpc("log.dmesg", {}, flags=flux.constants.FLUX_RPC_STREAMING)
    entries = []
    while True:
        try:
            entries.append(f.wait_for(10).get())
        except OSError as exc:
            assert exc.errno == errno.ENODATA
            break
        f.reset()
    assert any(e["message"] == "stream-end-marker" for e in entries)
    assert all({"level", "message", "timestamp", "rank"} <= set(e) for e in entries)


def test_log_forwarding_to_rank_0_and_levels(tree):
    h = tree.handle()
    leaf = at(tree, 5)
    leaf.rpc("log.append", {"message": "fwd-info-5", "level": 6}).get()
    leaf.rpc("attr.set", {"name": "log-forward-level", "value": "err"}).get()
    leaf.rpc("log.append", {"message": "notfwd-info-5", "level": 6}).get()
    leaf.rpc("log.append", {"message": "fwd-err-5", "level": 3}).get()
    leaf.rpc("attr.set", {"name": "log-forward-level", "value": "7"}).get()
    # the leaf's own ring has all three; rank 0's ring only the forwarded ones
    own = [e["message"] for e in leaf.rpc("log.dmesg", {}).get()["entries"]]
    assert {"fwd-info-5", "notfwd-info-5", "fwd-err-5"} <= set(own)
    # log.append is answered after forwarding was sent; a ping round trip through
    # rank 5 -> 0 orders it behind the forwarded entries
    leaf.rpc("broker.ping", {}, nodeid=0).get()
    root = {e["message"]: e for e in h.rpc("log.dmesg", {}).get()["entries"]}
    assert root["fwd-info-5"]["rank"] == 5 and root["fwd-err-5"]["level"] == 3
    assert "notfwd-info-5" not in root
    assert "fwd-info-5" not in own[own.index("fwd-err-5") + 1:]  # logged once on rank 5


def test_log_ring_size_and_level(make_instance):
    inst = make_instance(1, setattrs=["log-ring-size=4"])
    h = inst.handle()
    for i in range(10):
        h.rpc("log.append", {"message": f"m{i}"}).get()
    msgs = [e["message"] for e in h.rpc("log.dmesg", {}).get()["entries"]]
    assert msgs == ["m6", "m7", "m8", "m9"]
    h.attr_set("log-level", "err")
    h.rpc("log.append", {"message": "dropped", "level": 6}).get()
    h.rpc("log.append", {"message": "kept", "level": 3}).get()
    msgs = [e["message"] for e in h.rpc("log.dmesg", {}).get()["entries"]]
    assert "kept" in msgs and "dropped" not in msgs
    with pytest.raises(OSError) as ei:
        h.attr_set("log-ring-size", "0")
    assert ei.value.errno == errno.EINVAL
