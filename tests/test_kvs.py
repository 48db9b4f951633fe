"""The KVS through real brokers: the flux.kvs SDK, transactions, fences, namespaces,
ownership, bad input, and a 3-broker instance."""

from __future__ import annotations

import errno
import os
import time

import flux
import flux.kvs as kvs
import pytest
from conftest import Instance
from flux.core.kvs import treeobj as T


@pytest.fixture(scope="module")
def inst():
    i = Instance(1, setattrs=["kvs.max-value-size=100000"])
    yield i
    i.stop()


@pytest.fixture
def h(inst):
    handle = inst.handle()
    yield handle
    handle.close()


def guest(inst, monkeypatch, uid=1234):
    """A handle whose requests carry a guest's credentials (the owner may forge them)."""
    monkeypatch.setenv("FLUX_HANDLE_USERID", str(uid))
    monkeypatch.setenv("FLUX_HANDLE_ROLEMASK", "2")
    g = inst.handle()
    monkeypatch.delenv("FLUX_HANDLE_USERID")
    monkeypatch.delenv("FLUX_HANDLE_ROLEMASK")
    return g


def commit_raw(h, ops, namespace="primary", flags=0):
    return h.rpc("kvs.commit", {"namespace": namespace, "flags": flags, "ops": ops}).get()


def until(cond, timeout=10.0):
    """Repeat an RPC-backed check until it holds (no sleeping)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"


# -- values, directories, links --------------------------------------------------
def test_put_get_json_raw_and_str(h):
    kvs.put(h, "t1.json", {"a": [1, 2], "b": None})
    kvs.put(h, "t1.int", 42)
    kvs.put(h, "t1.str", "text")
    kvs.put(h, "t1.raw", b"\xff\xfe\x00")
    assert not kvs.exists(h, "t1.json")  # staged only
    kvs.commit(h)
    assert kvs.get(h, "t1.json") == {"a": [1, 2], "b": None}
    assert kvs.get(h, "t1.int") == 42
    assert kvs.get(h, "t1.str") == "text"
    assert kvs.get(h, "t1.raw") == b"\xff\xfe\x00"
    assert kvs.get_raw(h, "t1.json") == b'{"a":[1,2],"b":null}'  # compact JSON


def test_directories_walk_and_kvsdir(h):
    d = kvs.get_dir(h)
    d.mkdir("t2", {"x": 1, "sub.y": "two"})
    t2 = kvs.get(h, "t2")
    assert isinstance(t2, kvs.KVSDir)
    assert sorted(t2) == ["sub", "x"] and len(t2) == 2
    assert t2.list_all() == (["x"], ["sub"])
    assert t2["sub"]["y"] == "two"
    assert kvs.isdir(h, "t2.sub") and not kvs.isdir(h, "t2.x")
    with pytest.raises(KeyError):
        t2["nope"]
    walked = [(p, sorted(ds), sorted(fs)) for p, ds, fs in kvs.walk("t2", flux_handle=h, topdown=True)]
    assert walked == [("", ["sub"], ["x"]), ("sub", [], ["y"])]
    with kvs.get_dir(h, "t2") as t2w:
        t2w["sub"]["z"] = 3  # subdirectories share the transaction
        del t2w["x"]
    assert kvs.get(h, "t2.sub.z") == 3 and not kvs.exists(h, "t2.x")


def test_symlinks_unlink_and_errors(h):
    kvs.put(h, "t3.target", "v")
    kvs.put_symlink(h, "t3.link", "t3.target")
    kvs.put_mkdir(h, "t3.empty")
    kvs.commit(h)
    assert kvs.get(h, "t3.link") == "v"
    assert kvs.lookup(h, "t3.link", flags=T.READLINK) == T.symlink("t3.target")
    assert kvs.get(h, "t3.empty").list_all() == ([], [])
    kvs.put_unlink(h, "t3.target")
    kvs.commit(h)
    for key, code in (("t3.target", errno.ENOENT), ("t3.link", errno.ENOENT),
                      ("t3.empty.x", errno.ENOENT), ("t3.link.x", errno.ENOENT)):
        with pytest.raises(OSError) as ei:
            kvs.get(h, key)
        assert ei.value.errno == code, key
    kvs.put(h, "t3.val", 1)
    kvs.commit(h)
    with pytest.raises(OSError) as ei:
        kvs.get(h, "t3.val.below")
    assert ei.value.errno == errno.ENOTDIR
    with pytest.raises(OSError) as ei:
        kvs.lookup(h, "t3.val", flags=T.READLINK)
    assert ei.value.errno == errno.EINVAL


def test_copy_and_move_via_treeobj(h):
    kvs.put(h, "t4.src.a", 1)
    kvs.put(h, "t4.src.b.c", [1])
    kvs.commit(h)
    obj = kvs.lookup(h, "t4.src", flags=T.TREEOBJ)
    assert obj["type"] == "dir" and obj["data"]["b"]["type"] == "dir"
    txn = kvs.KVSTxn(h)
    txn.put_treeobj("t4.dst", obj)
    txn.unlink("t4.src")
    txn.commit()
    assert kvs.get(h, "t4.dst.b.c") == [1] and not kvs.exists(h, "t4.src")


# -- transactions ----------------------------------------------------------------
def private_ns(h, name):
    """A namespace only this test writes, so its version is predictable."""
    if name not in kvs.namespace_list(h):
        kvs.namespace_create(h, name)
    return name


def test_transaction_is_all_or_nothing(h):
    ns = private_ns(h, "t5ns")
    v0 = kvs.getroot(h, ns)["rootseq"]
    with pytest.raises(OSError) as ei:
        commit_raw(h, [
            {"key": "t5.a", "flags": 0, "dirent": T.val(b"1")},
            {"key": "t5.log", "flags": T.APPEND, "dirent": T.val(b"x")},
            {"key": "t5", "flags": T.APPEND, "dirent": T.val(b"boom")},  # t5 is now a directory
        ], namespace=ns)
    assert ei.value.errno == errno.EISDIR
    assert not kvs.exists(h, "t5", namespace=ns)
    assert kvs.getroot(h, ns)["rootseq"] == v0
    r = commit_raw(h, [{"key": "t5.a", "flags": 0, "dirent": T.val(b"1")},
                       {"key": "t5.b", "flags": 0, "dirent": T.val(b"2")}], namespace=ns)
    assert r["rootseq"] == v0 + 1
    assert kvs.get(h, "t5.a", namespace=ns) == 1 and kvs.get(h, "t5.b", namespace=ns) == 2


def test_kvstxn_context_and_commit_async(h):
    with kvs.KVSTxn(h, "t6") as t:
        t.put("a", 1)
        t.mkdir("d")
        t.symlink("l", "t6.a")
    assert kvs.get(h, "t6.l") == 1 and kvs.isdir(h, "t6.d")
    t = kvs.KVSTxn(h, "t6")
    t.put("b", 2)
    f = t.commit_async()
    assert t.is_empty()
    seq = f.get()["rootseq"]
    assert kvs.getroot(h)["rootseq"] >= seq and kvs.get(h, "t6.b") == 2


def test_wait_version(h, inst):
    ns = private_ns(h, "t7ns")
    h2 = inst.handle()
    target = kvs.getroot(h, ns)["rootseq"] + 2
    f = h2.rpc("kvs.wait-version", {"rootseq": target, "namespace": ns})
    kvs.put(h, "t7.a", 1)
    kvs.commit(h, namespace=ns)
    assert kvs.getroot(h2, ns)["rootseq"] == target - 1  # h2's requests are answered in order
    assert not f.is_ready()  # ...so the wait is still pending
    kvs.put(h, "t7.b", 1)
    kvs.commit(h, namespace=ns)
    assert f.get()["rootseq"] >= target
    h2.close()


def test_fence_with_n_clients(inst):
    n = 4
    handles = [inst.handle() for _ in range(n)]
    futs = []
    for i, hi in enumerate(handles[:-1]):
        futs.append(hi.rpc("kvs.fence", {"name": "f1", "nprocs": n, "namespace": "primary",
                                         "flags": 0, "ops": [{"key": f"t8.r{i}", "flags": 0,
                                                              "dirent": T.val(b"%d" % i)}]}))
    for hi, f in zip(handles, futs, strict=False):
        # a later request on the same connection is answered after the fence was received
        assert kvs.getroot(hi)["rootseq"] >= 0
        assert not f.is_ready()
    assert not kvs.exists(handles[0], "t8")
    txn = kvs.KVSTxn(handles[-1])
    txn.put(f"t8.r{n - 1}", n - 1)
    last = kvs.fence(handles[-1], "f1", n, _kvstxn=txn)
    seqs = {f.get()["rootseq"] for f in futs} | {last["rootseq"]}
    assert len(seqs) == 1  # one transaction
    assert [kvs.get(handles[0], f"t8.r{i}") for i in range(n)] == list(range(n))
    with pytest.raises(OSError) as ei:
        kvs.fence(handles[0], "", 2)
    assert ei.value.errno == errno.EINVAL
    for hi in handles:
        hi.close()


# -- namespaces and ownership ------------------------------------------------------
def test_namespaces_and_guest_access(h, inst, monkeypatch):
    kvs.namespace_create(h, "ns-guest", owner=1234)
    kvs.namespace_create(h, "ns-other", owner=4321)
    with pytest.raises(OSError) as ei:
        kvs.namespace_create(h, "ns-guest")
    assert ei.value.errno == errno.EEXIST
    assert {"ns-guest", "ns-other", "primary"} <= set(kvs.namespace_list(h))
    g = guest(inst, monkeypatch)
    kvs.put(g, "a", "mine")
    kvs.commit(g, namespace="ns-guest")
    assert kvs.get(g, "a", namespace="ns-guest") == "mine"
    assert kvs.get(h, "a", namespace="ns-guest") == "mine"  # the owner sees everything
    monkeypatch.setenv("FLUX_KVS_NAMESPACE", "ns-guest")
    assert kvs.get(g, "a") == "mine"
    monkeypatch.delenv("FLUX_KVS_NAMESPACE")
    for ns in ("primary", "ns-other"):
        with pytest.raises(OSError) as ei:
            kvs.get(g, "a", namespace=ns)
        assert ei.value.errno == errno.EPERM
        assert ns in ei.value.strerror
        kvs.put(g, "x", 1)
        with pytest.raises(OSError) as ei:
            kvs.commit(g, namespace=ns)
        assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        kvs.namespace_create(g, "ns-mine", owner=1234)
    assert ei.value.errno == errno.EPERM
    assert kvs.namespace_list(g) == ["ns-guest"]
    # a symlink into a namespace is followed with the reader's credentials
    txn = kvs.KVSTxn(h)
    txn.symlink("t9.guestns", ".", namespace="ns-guest")
    txn.commit()
    assert kvs.get(h, "t9.guestns.a") == "mine"
    kvs.namespace_remove(h, "ns-guest")
    with pytest.raises(OSError) as ei:
        kvs.get(h, "a", namespace="ns-guest")
    assert ei.value.errno == errno.ENOTSUP and "ns-guest" in ei.value.strerror
    with pytest.raises(OSError) as ei:
        kvs.namespace_remove(h, "primary")
    assert ei.value.errno == errno.EINVAL
    g.close()


def test_content_store_and_valref(h, inst, monkeypatch):
    ref = h.rpc("content.store", b"blob-data").get_str()
    assert ref.startswith("sha1-")
    assert h.rpc("content.load", ref.encode() + b"\0").get_raw() == b"blob-data"
    with pytest.raises(OSError) as ei:
        h.rpc("content.load", b"sha1-" + b"0" * 40 + b"\0").get_raw()
    assert ei.value.errno == errno.ENOENT
    commit_raw(h, [{"key": "t10.big", "flags": 0, "dirent": T.valref([ref, ref])}])
    assert kvs.get_raw(h, "t10.big") == b"blob-datablob-data"
    g = guest(inst, monkeypatch)
    with pytest.raises(OSError) as ei:
        g.rpc("content.store", b"x").get_str()
    assert ei.value.errno == errno.EPERM
    g.close()


# -- bad input ---------------------------------------------------------------------
BAD_COMMITS = [
    ({"namespace": "primary", "flags": 0}, errno.EPROTO),
    ({"namespace": "primary", "ops": {"a": 1}}, errno.EPROTO),
    ({"namespace": "primary", "ops": [{"key": "a", "flags": 0}]}, errno.EPROTO),
    ({"namespace": "primary", "ops": [{"key": "", "flags": 0, "dirent": None}]}, errno.EINVAL),
    ({"namespace": "primary", "ops": [{"key": ".", "flags": 0, "dirent": None}]}, errno.EINVAL),
    ({"namespace": "primary", "ops": [{"key": 7, "flags": 0, "dirent": None}]}, errno.EINVAL),
    ({"namespace": "primary", "ops": [{"key": "a", "flags": "x", "dirent": None}]}, errno.EPROTO),
    ({"namespace": "primary", "ops": [{"key": "a", "flags": 0,
                                       "dirent": {"ver": 1, "type": "val", "data": "%%%"}}]},
     errno.EINVAL),
    ({"namespace": "primary", "ops": [{"key": "a", "flags": 0,
                                       "dirent": {"ver": 1, "type": "dir", "data": {"x.y": None}}}]},
     errno.EINVAL),
    ({"namespace": "primary", "ops": [{"key": "a", "flags": 0, "dirent": "string"}]}, errno.EINVAL),
    ({"namespace": "primary", "ops": [{"key": "a", "flags": 0, "dirent": T.valref(["sha1-00"])}]},
     errno.ENOENT),
    ({"namespace": "nosuch", "ops": []}, errno.ENOTSUP),
    ({"namespace": "primary", "ops": [{"key": "big", "flags": 0, "dirent": T.val(b"x" * 100001)}]},
     errno.EFBIG),
]


@pytest.mark.parametrize("payload,code", BAD_COMMITS)
def test_bad_commits_are_refused_cleanly(h, payload, code):
    ns = private_ns(h, "t11ns")
    if payload.get("namespace") == "primary":
        payload = dict(payload, namespace=ns)
    v0 = kvs.getroot(h, ns)["rootseq"]
    with pytest.raises(OSError) as ei:
        h.rpc("kvs.commit", payload).get()
    assert ei.value.errno == code, ei.value.strerror
    assert ei.value.strerror
    assert kvs.getroot(h, ns)["rootseq"] == v0
    kvs.put(h, "t11.alive", 1)  # the broker is fine
    kvs.commit(h)
    assert kvs.get(h, "t11.alive") == 1


def test_bad_lookups(h):
    for payload, code in (({}, errno.EPROTO), ({"key": 5}, errno.EPROTO),
                          ({"key": ""}, errno.EINVAL), ({"key": "a", "flags": "x"}, errno.EPROTO),
                          ({"key": "a", "namespace": 3}, errno.EPROTO),
                          ({"key": "a", "flags": T.WATCH}, errno.EINVAL)):
        with pytest.raises(OSError) as ei:
            h.rpc("kvs.lookup", payload).get()
        assert ei.value.errno == code, payload
    with pytest.raises(OSError) as ei:
        h.rpc("kvs.lookup", b"not json\0").get()
    assert ei.value.errno == errno.EPROTO
    with pytest.raises(OSError) as ei:
        kvs.get(h, "")
    assert ei.value.errno == errno.EINVAL


def test_lookup_at_snapshot(h):
    kvs.put(h, "t12.a", 1)
    kvs.commit(h)
    root = kvs.getroot(h)
    snap = T.dir_({"x": T.dir_({"y": T.val(b"42")})})
    r = h.rpc("kvs.lookup", {"key": "x.y", "namespace": "primary", "flags": 0,
                             "rootdir": snap}).get()
    assert T.decode_val(r["val"]) == b"42"
    r = h.rpc("kvs.lookup", {"key": "t12.a", "flags": 0,
                             "rootdir": T.dirref(root["rootref"])}).get()
    assert T.decode_val(r["val"]) == b"1"


# -- more than one broker ------------------------------------------------------------
def test_three_brokers_rank2_reads_and_writes(make_instance):
    inst = make_instance(3)
    r = inst.flux("exec", "-r", "2", "flux", "kvs", "put", "from2.x=hello", check=True)
    assert r.returncode == 0
    assert inst.flux("kvs", "get", "from2.x", check=True).stdout == "hello\n"
    kvs_h = inst.handle()
    kvs.put(kvs_h, "from0.y", {"z": 1})
    kvs.commit(kvs_h)
    r = inst.flux("exec", "-r", "2", "flux", "kvs", "get", "from0.y", check=True)
    assert r.stdout == '{"z":1}\n'
    uri2 = kvs_h.rpc("attr.get", {"name": "local-uri"}, nodeid=2).get()["value"]
    h2 = flux.Flux(uri2)
    assert h2.attr_get("rank") == "2"
    f = kvs.watch(h2, "from0.w", flags=T.WATCH | T.WAITCREATE)
    kvs.put(kvs_h, "from0.w", 1)
    kvs.commit(kvs_h)
    assert T.decode_val(f.get()["val"]) == b"1"
    f.reset()
    h2.close()  # the watcher on rank 0 is dropped when its client on rank 2 goes away
    until(lambda: kvs_h.rpc("kvs.stats-get").get()["watchers"] == 0)
    kvs_h.close()
    assert os.path.basename(inst.flux("getattr", "content.backing-path", check=True)
                            .stdout.strip()) == "content.sqlite"
