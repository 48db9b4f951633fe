"""The KVS engine without a broker process: trees, transactions, the store, the
in-broker API (`broker.kvs`), group commit and flush failures."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3

import pytest
from flux.core.broker.attributes import Attributes
from flux.core.errors import FluxError
from flux.core.kvs import ops
from flux.core.kvs import treeobj as T
from flux.core.kvs.service import KVSService, KVSWatchService
from flux.core.kvs.store import Store
from flux.core.kvs.tree import Dir, Namespace, NodeBuilder, Txn, Val
from flux.core.message import RESPONSE, ROLE_OWNER, ROLE_USER, Message


class FakeBroker:
    """What KVSService needs from a broker, recording events and responses."""

    def __init__(self, statedir, **attrs):
        self.rank = 0
        self.owner = os.getuid()
        self.attrs = Attributes()
        self.attrs.set("statedir", str(statedir))
        for k, v in attrs.items():
            self.attrs.set(k, v)
        self.events: list[tuple[str, dict, int]] = []
        self.responses: list[Message] = []
        self.errors: list[str] = []

    def publish(self, topic, payload=None, flags=0, userid=None, rolemask=ROLE_OWNER):
        self.events.append((topic, payload, flags))

    def send_response(self, msg):
        self.responses.append(msg)

    def log(self, level, message):
        pass

    def log_exception(self, what, exc):
        self.errors.append(f"{what}: {exc!r}")


def make(tmp_path, **attrs) -> tuple[FakeBroker, KVSService]:
    b = FakeBroker(tmp_path, **attrs)
    return b, KVSService(b)


def run(coro):
    return asyncio.run(coro)


def request(topic, payload, userid=None, rolemask=ROLE_OWNER, sender="c0.1", tag=1, flags=0):
    m = Message.request(topic, payload, matchtag=tag, flags=flags)
    m.route = [sender]
    m.userid = os.getuid() if userid is None else userid
    m.rolemask = rolemask
    return m


# -- keys and tree objects -----------------------------------------------------
def test_normalize_key():
    assert T.normalize_key("a..b.") == ("a.b", True)
    assert T.normalize_key(".a.b") == ("a.b", False)
    assert T.normalize_key(".") == ("", False)
    assert T.normalize_key("abc") == ("abc", False)
    for bad in ("", None, 5, "a\0b", "x" * (T.KEY_MAX + 1), ".".join(["a"] * 101)):
        with pytest.raises(FluxError) as ei:
            T.normalize_key(bad)
        assert ei.value.errno == errno.EINVAL


def test_treeobj_checks():
    with pytest.raises(FluxError, match="unknown type"):
        T.check({"ver": 1, "type": "bogus", "data": 1})
    with pytest.raises(FluxError, match="version"):
        T.check({"ver": 2, "type": "val", "data": ""})
    with pytest.raises(FluxError, match="base64"):
        T.decode_val({"ver": 1, "type": "val", "data": "!!!"})
    assert T.decode_val(T.val(b"\x00\xff")) == b"\x00\xff"


# -- transactions --------------------------------------------------------------
def test_txn_is_atomic_and_undone():
    ns = Namespace("primary", 0)
    b = NodeBuilder(None, 1 << 20)
    t = Txn(ns, b)
    t.apply(ops.put("a.b", b"1"))
    t.apply(ops.append("log", b"x"))
    before_effects = len(t.effects)
    assert before_effects > 0
    t2 = Txn(ns, b)
    t2.apply(ops.put("a.c", b"2"))
    t2.apply(ops.append("log", b"y"))
    t2.apply(ops.unlink("a.b"))
    with pytest.raises(FluxError) as ei:
        t2.apply(ops.append("a", b"z"))  # a is a directory
    assert ei.value.errno == errno.EISDIR
    t2.rollback()
    a = ns.root.entries["a"]
    assert sorted(a.entries) == ["b"]
    assert ns.root.entries["log"].data() == b"x"


def test_put_through_value_makes_directory():
    ns = Namespace("primary", 0)
    t = Txn(ns, NodeBuilder(None, 1 << 20))
    t.apply(ops.put("a", b"1"))
    t.apply(ops.put("a.b", b"2"))
    assert isinstance(ns.root.entries["a"], Dir)
    assert ns.root.entries["a"].entries["b"].data() == b"2"
    assert "a" in t.keys and "a.b" in t.keys


def test_put_through_symlink_and_loop():
    ns = Namespace("primary", 0)
    t = Txn(ns, NodeBuilder(None, 1 << 20))
    t.apply(ops.mkdir("real"))
    t.apply(ops.symlink("ln", "real"))
    t.apply(ops.put("ln.x", b"1"))
    assert ns.root.entries["real"].entries["x"].data() == b"1"
    t.apply(ops.symlink("loop1", "loop2"))
    t.apply(ops.symlink("loop2", "loop1"))
    with pytest.raises(FluxError) as ei:
        t.apply(ops.put("loop1.x", b"1"))
    assert ei.value.errno == errno.ELOOP
    t.apply(ops.symlink("other", "x", namespace="elsewhere"))
    with pytest.raises(FluxError, match="into namespace elsewhere"):
        t.apply(ops.put("other.y", b"1"))


def test_value_size_limit():
    ns = Namespace("primary", 0)
    t = Txn(ns, NodeBuilder(None, 10))
    with pytest.raises(FluxError) as ei:
        t.apply(ops.put("big", b"x" * 11))
    assert ei.value.errno == errno.EFBIG
    t.apply(ops.append("log", b"x" * 6))
    with pytest.raises(FluxError) as ei:
        t.apply(ops.append("log", b"x" * 6))
    assert ei.value.errno == errno.EFBIG


def test_val_tail_and_collapse():
    v = Val([b"abc"])
    for i in range(300):
        v.append(b"%03d" % i)
    assert len(v.chunks) <= 257
    assert v.size == 3 + 900
    assert v.tail(v.size - 6) == b"298299"
    assert v.data().endswith(b"299") and v.nseq == 301


# -- store ---------------------------------------------------------------------
def test_store_roundtrip_with_chunks(tmp_path):
    path = str(tmp_path / "content.sqlite")
    st = Store(path)
    ns = Namespace("primary", 0)
    t = Txn(ns, NodeBuilder(None, 1 << 20))
    for op in (ops.put("a.b", b"1"), ops.mkdir("empty"), ops.symlink("ln", "a.b"),
               ops.append("log", b"l1\n"), ops.append("log", b"l2\n")):
        t.apply(op)
    st.write([(3, "primary", 0, 0, 7)] + t.effects)
    t2 = Txn(ns, NodeBuilder(None, 1 << 20))
    t2.apply(ops.append("log", b"l3\n"))
    st.write(t2.effects)
    rows = st.conn.execute("SELECT seq FROM kv WHERE key='log' ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [0, 1, 2]  # appends are separate rows
    st.close()
    loaded = Store(path).load()["primary"]
    assert loaded.rootseq == 7
    root = loaded.root
    assert root.entries["a"].entries["b"].data() == b"1"
    assert root.entries["empty"].entries == {}
    assert root.entries["ln"].target == "a.b"
    assert root.entries["log"].data() == b"l1\nl2\nl3\n"
    assert root.entries["log"].nseq == 3


# -- the service's in-process API ----------------------------------------------
def test_commit_ops_lookup_and_events(tmp_path):
    b, kvs = make(tmp_path)

    async def main():
        r = await kvs.commit_ops("primary", [ops.put_json("job.1.R", {"a": 1}),
                                             ops.append_event("job.1.eventlog", "submit", {"x": 1})])
        assert r["rootseq"] == 1
        assert kvs.lookup_json("primary", "job.1.R") == {"a": 1}
        assert kvs.listdir("primary", "job.1") == ["R", "eventlog"]
        assert kvs.exists("primary", "job.1.R") and not kvs.exists("primary", "job.2")
        with pytest.raises(FluxError) as ei:
            kvs.lookup_value("primary", "job.1")
        assert ei.value.errno == errno.EISDIR

    run(main())
    topics = [e[0] for e in b.events]
    assert topics == ["kvs.namespace-primary-setroot"]
    payload = b.events[0][1]
    assert payload["rootseq"] == 1 and "job.1.R" in payload["keys"] and b.events[0][2] & 0x20


def test_group_commit_one_flush(tmp_path):
    b, kvs = make(tmp_path)

    async def main():
        futs = [kvs.commit_nowait("primary", [ops.put(f"k{i}", b"%d" % i)]) for i in range(50)]
        assert kvs.stats["flushes"] == 0
        res = await asyncio.gather(*futs)
        assert [r["rootseq"] for r in res] == list(range(1, 51))
        assert kvs.stats["flushes"] == 1

    run(main())
    assert len(b.events) == 1 and b.events[0][1]["rootseq"] == 50


def test_flush_failure_rolls_back(tmp_path, monkeypatch):
    b, kvs = make(tmp_path)

    async def main():
        await kvs.commit_ops("primary", [ops.put("keep", b"1")])

        def broken(effects, sync=False):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(kvs.store, "write", broken)
        f1 = kvs.commit_nowait("primary", [ops.put("lost", b"1"), ops.put("keep", b"2")])
        f2 = kvs.commit_nowait("primary", [ops.append("keep2", b"x")])
        for f in (f1, f2):
            with pytest.raises(FluxError) as ei:
                await f
            assert ei.value.errno == errno.EIO
        assert kvs.lookup_value("primary", "keep") == b"1"
        assert not kvs.exists("primary", "lost") and not kvs.exists("primary", "keep2")
        assert kvs.namespaces["primary"].rootseq == 1

    run(main())
    assert any("writing to the content store failed" in e for e in b.errors)


def test_failed_commit_applies_nothing(tmp_path):
    b, kvs = make(tmp_path)

    async def main():
        with pytest.raises(FluxError):
            await kvs.commit_ops("primary", [ops.put("a", b"1"), {"key": "", "dirent": None}])
        assert not kvs.exists("primary", "a")
        assert kvs.namespaces["primary"].rootseq == 0

    run(main())
    assert b.events == []


def test_namespaces_and_internal_watch(tmp_path):
    b, kvs = make(tmp_path)
    seen: list = []

    async def main():
        await kvs.namespace_create("job-1", owner=1234)
        with pytest.raises(FluxError) as ei:
            await kvs.namespace_create("job-1", owner=1234)
        assert ei.value.errno == errno.EEXIST
        w = kvs.watch_internal("job-1", "output", lambda d, e: seen.append((d, e)))
        await kvs.commit_ops("job-1", [ops.append("output", b"hello ")], userid=1234)
        await kvs.commit_ops("job-1", [ops.append("output", b"world")])
        with pytest.raises(FluxError) as ei:
            await kvs.commit_ops("job-1", [ops.put("x", b"1")], userid=99)
        assert ei.value.errno == errno.EPERM
        with pytest.raises(FluxError) as ei:
            await kvs.commit_ops("primary", [ops.put("x", b"1")], userid=1234)
        assert ei.value.errno == errno.EPERM
        assert w.active
        await kvs.namespace_remove("job-1")
        assert not w.active
        with pytest.raises(FluxError) as ei:
            kvs.lookup_value("job-1", "output")
        assert ei.value.errno == errno.ENOTSUP

    run(main())
    assert seen == [(b"hello ", 0), (b"world", 0), (None, errno.ENOTSUP)]
    assert ("kvs.namespace-job-1-removed", {"namespace": "job-1"}, 0x20) in b.events


def test_copy_directory_between_namespaces(tmp_path):
    b, kvs = make(tmp_path)

    async def main():
        await kvs.namespace_create("job-7")
        await kvs.commit_ops("job-7", [ops.append("output", b"o1"), ops.put("exec.x", b"1")])
        await kvs.commit_ops("job-7", [ops.append("output", b"o2")])
        await kvs.copy("job-7", ".", "primary", "job.7.guest")
        assert kvs.lookup_value("primary", "job.7.guest.output") == b"o1o2"
        assert kvs.lookup_value("primary", "job.7.guest.exec.x") == b"1"
        await kvs.commit_ops("primary", [ops.append("job.7.guest.output", b"o3")])
        # the copy is independent of its source
        assert kvs.lookup_value("job-7", "output") == b"o1o2"

    run(main())
    kvs.store.close()
    again = Store(str(tmp_path / "content.sqlite")).load()
    assert again["primary"].root.entries["job"].entries["7"].entries["guest"].entries[
        "output"].data() == b"o1o2o3"


def test_rpc_handlers_check_access_and_input(tmp_path):
    b, kvs = make(tmp_path)
    watch = KVSWatchService(b, kvs)

    async def main():
        kvs.dispatch(request("kvs.commit", {"namespace": "primary", "flags": 0,
                                            "ops": [{"key": "a", "flags": 0, "dirent": T.val(b"1")}]}))
        bad = [
            {"namespace": "primary", "ops": "nope"},
            {"namespace": "primary", "ops": [{"key": "a"}]},
            {"namespace": "primary", "ops": [{"key": "a", "dirent": {"ver": 1, "type": "val"}}]},
            {"namespace": "primary", "ops": [5]},
            {"namespace": "nosuch", "ops": []},
            {"namespace": "primary", "flags": 1 << 20, "ops": []},
        ]
        for i, p in enumerate(bad):
            kvs.dispatch(request("kvs.commit", p, tag=10 + i))
        kvs.dispatch(request("kvs.lookup", {"key": "a"}, userid=1234, rolemask=ROLE_USER, tag=30))
        kvs.dispatch(request("kvs.namespace-create", {"namespace": "x", "owner": 5},
                             userid=1234, rolemask=ROLE_USER, tag=31))
        watch.dispatch(request("kvs-watch.lookup", {"key": "a", "flags": T.WATCH}, tag=32))
        await kvs.commit_ops("primary", [ops.put("z", b"1")])  # once this is on disk, so is all before

    run(main())
    by_tag = {m.matchtag: m for m in b.responses if m.type == RESPONSE}
    assert by_tag[1].errnum == 0 and by_tag[1].data()["rootseq"] == 1
    assert by_tag[10].errnum == errno.EPROTO
    assert by_tag[11].errnum == errno.EPROTO
    assert by_tag[12].errnum == errno.EINVAL
    assert by_tag[13].errnum == errno.EPROTO
    assert by_tag[14].errnum == errno.ENOTSUP and "nosuch" in by_tag[14].errstr()
    assert by_tag[15].errnum == errno.EINVAL
    assert by_tag[30].errnum == errno.EPERM and "primary" in by_tag[30].errstr()
    assert by_tag[31].errnum == errno.EPERM
    assert by_tag[32].errnum == errno.EPROTO  # WATCH without the streaming flag
    assert kvs.namespaces["primary"].rootseq == 2  # "a", then the test's own "z"


def test_depth_limit_keeps_tree_objects_encodable():
    import orjson
    from flux.core.kvs.tree import Hasher, full_treeobj

    def nested(n):
        obj = T.val(b"leaf")
        for _ in range(n):
            obj = T.dir_({"d": obj})
        return obj

    ns = Namespace("primary", 0)
    t = Txn(ns, NodeBuilder(None, 1 << 20))
    t.apply(ops.put_treeobj("top", nested(T.DEPTH_MAX - 1)))
    orjson.dumps(full_treeobj(ns.root))  # the deepest tree still encodes
    Hasher().dir_ref(ns.root)
    for key, obj in (("top2", nested(T.DEPTH_MAX)), ("a.b", nested(T.DEPTH_MAX - 1))):
        with pytest.raises(FluxError) as ei:
            t.apply(ops.put_treeobj(key, obj))
        assert ei.value.errno == errno.EINVAL
    t.apply(ops.symlink("deep", ".".join(["x"] * (T.DEPTH_MAX - 1))))
    with pytest.raises(FluxError, match="resolves to more than"):
        t.apply(ops.put("deep.y.z", b"1"))


def test_large_values_leave_memory_once_on_disk(tmp_path):
    b, kvs = make(tmp_path)
    big = b"j" * 4000

    async def main():
        await kvs.commit_ops("primary", [{"key": "job.1.jobspec", "flags": 0, "raw": big},
                                         {"key": "job.1.small", "flags": 0, "raw": b"x"}])
        d = kvs.namespaces["primary"].root.entries["job"].entries["1"]
        node = d.entries["jobspec"]
        assert node.chunks is None and node.size == 4000  # evicted
        assert d.entries["small"].chunks == [b"x"]  # small values stay
        assert kvs.lookup_value("primary", "job.1.jobspec") == big  # read back from SQLite
        await kvs.copy("primary", "job.1", "primary", "job.2")
        assert kvs.lookup_value("primary", "job.2.jobspec") == big
        await kvs.commit_ops("primary", [ops.append("job.1.jobspec", b"+tail")])
        assert kvs.lookup_value("primary", "job.1.jobspec") == big + b"+tail"
        # a failed commit on top of an evicted value rolls it back intact
        with pytest.raises(FluxError):
            await kvs.commit_ops("primary", [ops.append("job.2.jobspec", b"x"),
                                             {"key": "", "dirent": None}])
        assert kvs.lookup_value("primary", "job.2.jobspec") == big

    run(main())
    kvs.store.close()
    again = Store(str(tmp_path / "content.sqlite")).load()
    job = again["primary"].root.entries["job"]
    assert job.entries["1"].entries["jobspec"].data() == big + b"+tail"
    assert job.entries["2"].entries["jobspec"].data() == big


def test_final_append_leaves_memory_unless_appended_again(tmp_path):
    """An op marked `evict` (the job manager's last eventlog entry) lets the KVS drop the
    appended value from memory once on disk; reads and later appends still see it all."""
    b, kvs = make(tmp_path)

    def node(key):
        d = kvs.namespaces["primary"].root
        for part in key.split("."):
            d = d.entries[part]
        return d

    async def main():
        await kvs.commit_ops("primary", [{"key": "job.1.eventlog", "flags": T.APPEND, "raw": b"a\n"}])
        await kvs.commit_ops("primary", [{"key": "job.1.eventlog", "flags": T.APPEND, "raw": b"b\n"}])
        assert node("job.1.eventlog").chunks == [b"a\n", b"b\n"]  # appended values stay
        await kvs.commit_ops("primary", [{"key": "job.1.eventlog", "flags": T.APPEND,
                                          "raw": b"c\n", "evict": True}])
        assert node("job.1.eventlog").chunks is None
        assert kvs.lookup_value("primary", "job.1.eventlog") == b"a\nb\nc\n"
        # appended again in the same batch as the final append: the newer one wins
        fut1 = kvs.commit_nowait("primary", [{"key": "job.2.log", "flags": T.APPEND,
                                              "raw": b"x", "evict": True}])
        fut2 = kvs.commit_nowait("primary", [{"key": "job.2.log", "flags": T.APPEND, "raw": b"y"}])
        await asyncio.gather(fut1, fut2)
        assert node("job.2.log").chunks is not None
        assert kvs.lookup_value("primary", "job.2.log") == b"xy"
        await kvs.commit_ops("primary", [ops.append("job.1.eventlog", b"d\n")])
        assert kvs.lookup_value("primary", "job.1.eventlog") == b"a\nb\nc\nd\n"

    run(main())
    kvs.store.close()
    again = Store(str(tmp_path / "content.sqlite")).load()
    assert again["primary"].root.entries["job"].entries["1"].entries["eventlog"].data() == b"a\nb\nc\nd\n"


def test_unlink_prune_removes_emptied_parents_only(tmp_path):
    """`prune` (the job manager's purge) also unlinks the parent directories the unlink
    leaves empty, up to the first component; a parent with other entries stays."""
    b, kvs = make(tmp_path)

    async def main():
        await kvs.commit_ops("primary", [
            {"key": "job.0000.0001.0002.0003.eventlog", "flags": 0, "raw": b"a"},
            {"key": "job.0000.0001.0002.0004.eventlog", "flags": 0, "raw": b"b"},
            {"key": "job.0000.0009.0000.0000.eventlog", "flags": 0, "raw": b"c"}])
        await kvs.commit_ops("primary", [{"key": "job.0000.0001.0002.0003", "flags": 0,
                                          "dirent": None, "prune": True}])
        assert kvs.listdir("primary", "job.0000.0001.0002") == ["0004"]  # not empty: kept
        await kvs.commit_ops("primary", [{"key": "job.0000.0001.0002.0004", "flags": 0,
                                          "dirent": None, "prune": True}])
        assert kvs.listdir("primary", "job.0000") == ["0009"]
        await kvs.commit_ops("primary", [{"key": "job.0000.0009.0000.0000", "flags": 0,
                                          "dirent": None, "prune": True}])
        assert kvs.listdir("primary", "job") == []  # the first component stays
        # a plain unlink leaves its parent even when empty (as the KVS always has)
        await kvs.commit_ops("primary", [{"key": "x.y.z", "flags": 0, "raw": b"1"}])
        await kvs.commit_ops("primary", [{"key": "x.y.z", "flags": 0, "dirent": None}])
        assert kvs.listdir("primary", "x.y") == []

    run(main())
    kvs.store.close()
    again = Store(str(tmp_path / "content.sqlite")).load()
    assert again["primary"].root.entries["job"].entries == {}
