"""kvs-watch.lookup: streams of values, WAITCREATE, WATCH_APPEND, WATCH_UNIQ, cancel,
and clients that go away mid-stream."""

from __future__ import annotations

import errno
import time

import flux.kvs as kvs
import pytest
from conftest import Instance
from flux.core.kvs import treeobj as T


@pytest.fixture(scope="module")
def inst():
    i = Instance(1)
    yield i
    i.stop()


@pytest.fixture
def h(inst):
    handle = inst.handle()
    yield handle
    handle.close()


def put(h, key, value, namespace=None):
    kvs.put(h, key, value)
    kvs.commit(h, namespace=namespace)


def append(h, key, data: bytes, namespace=None):
    h.rpc("kvs.commit", {"namespace": namespace or "primary", "flags": 0,
                         "ops": [{"key": key, "flags": T.APPEND, "dirent": T.val(data)}]}).get()


def nxt(f):
    """The next response's value (bytes), moving the stream on."""
    v = T.decode_val(f.get()["val"])
    f.reset()
    return v


def nwatchers(h):
    return h.rpc("kvs.stats-get").get()["watchers"]


def assert_pending(h, f):
    """f has no response: a later request on the same connection was answered first."""
    assert kvs.getroot(h)["rootseq"] >= 0
    assert not f.is_ready()


def test_watch_initial_and_each_write(h):
    put(h, "w1.k", 1)
    f = kvs.watch(h, "w1.k")
    assert nxt(f) == b"1"
    put(h, "w1.k", 2)
    put(h, "w1.k", 2)
    put(h, "w1.other", 5)  # another key: no response
    put(h, "w1.k", 3)
    assert [nxt(f), nxt(f), nxt(f)] == [b"2", b"2", b"3"]
    f.cancel()
    with pytest.raises(OSError) as ei:
        f.get()
    assert ei.value.errno == errno.ENODATA


def test_watch_uniq(h):
    put(h, "w2.k", "a")
    f = kvs.watch(h, "w2.k", flags=T.WATCH | T.WATCH_UNIQ)
    assert nxt(f) == b'"a"'
    put(h, "w2.k", "a")
    put(h, "w2.k", "b")
    assert nxt(f) == b'"b"'  # the unchanged write was not reported
    f.cancel()


def test_watch_missing_key_is_enoent_unless_waitcreate(h):
    f = kvs.watch(h, "w3.nope")
    with pytest.raises(OSError) as ei:
        f.get()
    assert ei.value.errno == errno.ENOENT
    f = kvs.watch(h, "w3.later", flags=T.WATCH | T.WAITCREATE)
    assert_pending(h, f)
    put(h, "w3.later", "here")
    assert nxt(f) == b'"here"'
    kvs.put_unlink(h, "w3.later")
    kvs.commit(h)
    with pytest.raises(OSError) as ei:  # the key went away: the stream ends
        f.get()
    assert ei.value.errno == errno.ENOENT


def test_waitcreate_without_watch_answers_once(h):
    f = kvs.watch(h, "w4.k", flags=T.WAITCREATE)
    assert_pending(h, f)
    put(h, "w4.k", 7)
    assert f.get()["val"] == T.val(b"7")


def test_watch_append_sends_only_new_bytes(h):
    append(h, "w5.log", b"a\n")
    f = kvs.watch(h, "w5.log", flags=T.WATCH | T.WATCH_APPEND)
    assert nxt(f) == b"a\n"
    append(h, "w5.log", b"b\n")
    append(h, "w5.log", b"c\n")
    assert nxt(f) + nxt(f) == b"b\nc\n"
    put(h, "w5.log", "replaced")
    with pytest.raises(OSError) as ei:
        f.get()
    assert ei.value.errno == errno.EINVAL and "overwritten" in ei.value.strerror


def test_watch_append_waitcreate_eventlog(h):
    f = kvs.watch(h, "w6.eventlog", flags=T.WATCH | T.WATCH_APPEND | T.WAITCREATE)
    assert_pending(h, f)
    events = [b'{"timestamp":1.0,"name":"submit"}\n', b'{"timestamp":2.0,"name":"start"}\n']
    for e in events:
        append(h, "w6.eventlog", e)
    assert [nxt(f), nxt(f)] == events
    f.cancel()
    with pytest.raises(OSError) as ei:
        f.get()
    assert ei.value.errno == errno.ENODATA


def test_replacing_parent_directory_is_noticed(h):
    put(h, "w7.dir.x", 1)
    f = kvs.watch(h, "w7.dir.x")
    assert nxt(f) == b"1"
    obj = T.dir_({"x": T.val(b"2")})
    h.rpc("kvs.commit", {"namespace": "primary", "flags": 0,
                         "ops": [{"key": "w7.dir", "flags": 0, "dirent": obj}]}).get()
    assert nxt(f) == b"2"
    kvs.put_unlink(h, "w7")
    kvs.commit(h)
    with pytest.raises(OSError) as ei:
        f.get()
    assert ei.value.errno == errno.ENOENT


def test_watch_full_sees_changes_below_a_directory(h):
    put(h, "w8.d.a", 1)
    f = kvs.watch(h, "w8.d", flags=T.WATCH | T.READDIR | T.WATCH_FULL)
    first = f.get()["val"]
    f.reset()
    assert sorted(first["data"]) == ["a"]
    put(h, "w8.d.b", 2)
    assert sorted(f.get()["val"]["data"]) == ["a", "b"]
    f.cancel()


def test_namespace_removal_ends_watch(h):
    kvs.namespace_create(h, "wns")
    put(h, "k", 1, namespace="wns")
    f = kvs.watch(h, "k", namespace="wns")
    assert nxt(f) == b"1"
    kvs.namespace_remove(h, "wns")
    with pytest.raises(OSError) as ei:
        f.get()
    assert ei.value.errno == errno.ENOTSUP


def test_disconnect_mid_stream_drops_watchers(inst, h):
    put(h, "w9.k", 0)
    other = inst.handle()
    base = nwatchers(h)
    fs = [kvs.watch(other, "w9.k"), kvs.watch(other, "w9.k", flags=T.WATCH | T.WAITCREATE
                                              | T.WATCH_APPEND)]
    fs.append(kvs.watch(other, "w9.none", flags=T.WATCH | T.WAITCREATE))
    assert nxt(fs[0]) == b"0"
    assert nwatchers(h) == base + 3
    other.close()
    deadline = time.monotonic() + 10
    while nwatchers(h) != base:  # each check is a round trip to the broker
        assert time.monotonic() < deadline
    put(h, "w9.k", 1)  # nobody to tell; the broker carries on
    assert kvs.get(h, "w9.k") == 1


def test_cancel_only_matches_own_stream(inst, h):
    put(h, "w10.k", 0)
    f = kvs.watch(h, "w10.k")
    assert nxt(f) == b"0"
    other = inst.handle()
    other.rpc("kvs-watch.cancel", {"matchtag": f.matchtag}, flags=1)  # same tag, other client
    assert kvs.getroot(other)["rootseq"] >= 0
    put(h, "w10.k", 1)
    assert nxt(f) == b"1"  # still watching
    f.cancel()
    with pytest.raises(OSError) as ei:
        f.get()
    assert ei.value.errno == errno.ENODATA
    other.close()


def test_watch_requires_streaming_flag(h):
    with pytest.raises(OSError) as ei:
        h.rpc("kvs-watch.lookup", {"key": "a", "namespace": "primary", "flags": T.WATCH}).get()
    assert ei.value.errno == errno.EPROTO
    with pytest.raises(OSError) as ei:
        h.rpc("kvs-watch.lookup", {"key": "a", "flags": T.WATCH | T.WATCH_APPEND | T.READDIR},
              flags=2).get()
    assert ei.value.errno == errno.EINVAL
