"""The KVS survives a restart with the same statedir: after a clean stop, and after
the broker was killed with SIGKILL (every answered commit is on disk)."""

from __future__ import annotations

import os
import signal
import sqlite3

import flux.kvs as kvs
from flux.core.kvs import treeobj as T


def start(make_instance, statedir, size=1):
    return make_instance(size, setattrs=[f"statedir={statedir}"])


def fill(h):
    kvs.put(h, "p.json", {"a": 1})
    kvs.put(h, "p.raw", b"\xff\x00")
    kvs.put_mkdir(h, "p.empty")
    kvs.put_symlink(h, "p.link", "p.json")
    kvs.commit(h)
    kvs.namespace_create(h, "job-5", owner=1234)
    kvs.put(h, "x", "in-ns")
    kvs.commit(h, namespace="job-5")
    for i in range(20):
        h.rpc("kvs.commit", {"namespace": "primary", "flags": 0,
                             "ops": [{"key": "p.log", "flags": T.APPEND,
                                      "dirent": T.val(b"line %d\n" % i)}]}).get()
    return snapshot(h)


def snapshot(h):
    return dict(kvs.getroot(h), p=kvs.lookup(h, "p", flags=T.READDIR),
                **{"job-5": kvs.getroot(h, "job-5")["rootref"]})


def check(h, root):
    assert kvs.get(h, "p.json") == {"a": 1}
    assert kvs.get(h, "p.raw") == b"\xff\x00"
    assert kvs.get(h, "p.empty").list_all() == ([], [])
    assert kvs.get(h, "p.link") == {"a": 1}
    assert kvs.get_raw(h, "p.log") == b"".join(b"line %d\n" % i for i in range(20))
    assert kvs.get(h, "x", namespace="job-5") == "in-ns"
    ns = {n["namespace"]: n for n in h.rpc("kvs.namespace-list").get()["namespaces"]}
    assert ns["job-5"]["owner"] == 1234
    # the same tree, hash for hash (other services may have written elsewhere since)
    assert kvs.lookup(h, "p", flags=T.READDIR) == root["p"]
    assert kvs.getroot(h)["rootseq"] >= root["rootseq"]  # versions never go back
    assert kvs.getroot(h, "job-5")["rootref"] == root["job-5"]


def test_restart_after_clean_stop(make_instance, tmp_path):
    inst = start(make_instance, tmp_path)
    h = inst.handle()
    root = fill(h)
    h.close()
    assert inst.stop() == 0
    db = tmp_path / "content.sqlite"
    assert db.exists()
    # appends are separate rows, not rewrites of the whole value
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT COUNT(*) FROM kv WHERE ns='primary' AND key='p.log'").fetchone()[0]
    assert n == 20
    again = start(make_instance, tmp_path)
    h2 = again.handle()
    check(h2, root)
    kvs.put(h2, "x", 2)  # and it carries on from there
    kvs.commit(h2, namespace="job-5")
    assert kvs.getroot(h2, "job-5")["rootseq"] == 2
    h2.close()


def test_restart_after_sigkill(make_instance, tmp_path):
    inst = start(make_instance, tmp_path)
    h = inst.handle()
    root = fill(h)
    # many commits in flight at once (one group commit or several); all answered
    futs = [h.rpc("kvs.commit", {"namespace": "primary", "flags": 0,
                                 "ops": [{"key": f"burst.k{i}", "flags": 0,
                                          "dirent": T.val(b"%d" % i)}]}) for i in range(300)]
    seqs = [f.get()["rootseq"] for f in futs]
    assert len(set(seqs)) == 300 and min(seqs) > root["rootseq"]
    root = snapshot(h)
    pid = int(h.attr_get("broker.pid"))
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    inst.stop()
    assert inst.proc.returncode == 128 + signal.SIGKILL
    again = start(make_instance, tmp_path)
    h2 = again.handle()
    check(h2, root)
    assert [kvs.get(h2, f"burst.k{i}") for i in range(300)] == list(range(300))
    h2.close()


def test_no_statedir_means_fresh_kvs(make_instance):
    inst = make_instance(1)
    h = inst.handle()
    path = h.attr_get("content.backing-path")
    assert path.startswith(inst.rundir)  # the temporary rundir, removed at exit
    assert not kvs.exists(h, "p") and kvs.namespace_list(h) == ["primary"]
    h.close()


def test_statedir_in_use_is_refused(make_instance, tmp_path):
    first = start(make_instance, tmp_path)
    h = first.handle()
    kvs.put(h, "mine", 1)
    kvs.commit(h)
    second = start(make_instance, tmp_path)
    r = second.flux("kvs", "get", "mine")
    assert r.returncode == 1 and "No service matching kvs.lookup" in r.stderr
    assert "in use by another broker" in second.flux("dmesg", check=True).stdout
    assert kvs.get(h, "mine") == 1  # the first instance is untouched
    h.close()
