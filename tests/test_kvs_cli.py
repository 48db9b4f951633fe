"""`flux kvs`: outputs and errors of each subcommand (flux-kvs(1), SPEC 10.5)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import FLUX, Instance


@pytest.fixture(scope="module")
def inst():
    i = Instance(1)
    yield i
    i.stop()


def kvs(inst, *args, input=None, env=None):
    return inst.flux("kvs", *args, input=input, env=env)


def ok(inst, *args, input=None, env=None) -> str:
    r = kvs(inst, *args, input=input, env=env)
    assert r.returncode == 0, f"flux kvs {' '.join(args)}: {r.stderr}"
    return r.stdout


def fails(inst, *args) -> str:
    r = kvs(inst, *args)
    assert r.returncode == 1, f"flux kvs {' '.join(args)} should fail: {r.stdout}"
    return r.stderr


def watchers(inst) -> int:
    h = inst.handle()
    try:
        return h.rpc("kvs.stats-get").get()["watchers"]
    finally:
        h.close()


def wait_watchers(inst, n: int, timeout: float = 30) -> None:
    """Until n watchers are registered (each check is an RPC; no sleeping)."""
    deadline = time.monotonic() + timeout
    while watchers(inst) < n:
        assert time.monotonic() < deadline, f"fewer than {n} watchers"


def test_put_get_forms(inst):
    ok(inst, "put", "c1.a=1", "c1.s=hello world", 'c1.j={"b": 2}')
    assert ok(inst, "get", "c1.a", "c1.s", "c1.j") == '1\nhello world\n{"b": 2}\n'
    assert ok(inst, "get", "--label", "c1.a") == "c1.a=1\n"
    assert ok(inst, "get", "--raw", "c1.a") == "1"
    assert json.loads(ok(inst, "get", "--treeobj", "c1.a")) == {"ver": 1, "type": "val",
                                                                  "data": "MQ=="}
    ok(inst, "put", "--raw", "c1.bin=-", input="line1\nline2\n")
    assert ok(inst, "get", "--raw", "c1.bin") == "line1\nline2\n"
    ok(inst, "put", "--treeobj", 'c1.t={"ver":1,"type":"val","data":"eA=="}')
    assert ok(inst, "get", "c1.t") == "x\n"
    ok(inst, "put", "c1.e=")
    assert ok(inst, "get", "c1.e") == ""  # empty value: no newline
    ok(inst, "put", "--append", "c1.app=ab")
    ok(inst, "put", "-A", "c1.app=cd")
    assert ok(inst, "get", "c1.app") == "abcd\n"
    ok(inst, "namespace", "create", "c1ns")  # only this test writes there
    seq = int(ok(inst, "put", "-N", "c1ns", "-s", "c1.z=1"))
    assert seq == int(ok(inst, "version", "-N", "c1ns")) == 1
    assert json.loads(ok(inst, "put", "-O", "c1.z=2"))["type"] == "dirref"


def test_errors_name_the_key(inst):
    assert fails(inst, "get", "c2.missing") == "flux-kvs: c2.missing: No such file or directory\n"
    ok(inst, "put", "c2.d.x=1")
    assert fails(inst, "get", "c2.d") == "flux-kvs: c2.d: Is a directory\n"
    assert fails(inst, "get", "c2.d.x.y") == "flux-kvs: c2.d.x.y: Not a directory\n"
    assert "key=value" in fails(inst, "put", "c2.novalue")
    assert "must not be empty" in fails(inst, "put", "=v")
    assert "must not be empty" in fails(inst, "get", "")
    assert fails(inst, "get", "-N", "nons", "x") == "flux-kvs: namespace 'nons' does not exist\n"
    assert "invalid namespace" in fails(inst, "get", "-N", "a b", "x")
    r = kvs(inst, "bogus")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_dir_and_ls(inst):
    ok(inst, "put", "c3.a=1", "c3.b.c=x", 'c3.j=[1, 2]', 'c3.s="quoted"')
    ok(inst, "link", "c3.a", "c3.l")
    ok(inst, "mkdir", "c3.e")
    assert ok(inst, "dir", "c3") == (
        "c3.a = 1\nc3.b.\nc3.e.\nc3.j = [1,2]\nc3.l -> c3.a\nc3.s = quoted\n")
    assert ok(inst, "dir", "-R", "c3") == (
        "c3.a = 1\nc3.b.c = x\nc3.e.\nc3.j = [1,2]\nc3.l -> c3.a\nc3.s = quoted\n")
    assert ok(inst, "dir", "-R", "-d", "c3.b") == "c3.b.c\n"
    ok(inst, "put", "c3w.long=" + "v" * 100)
    assert ok(inst, "dir", "-w", "20", "c3w") == "c3w.long = vvvvvv...\n"
    assert ok(inst, "dir", "-w", "0", "c3w") == "c3w.long = " + "v" * 100 + "\n"
    assert ok(inst, "ls", "-1", "c3") == "a\nb\ne\nj\nl\ns\n"
    assert ok(inst, "ls", "-1", "-F", "c3") == "a\nb.\ne.\nj\nl@\ns\n"
    assert ok(inst, "ls", "-w", "80", "c3") == "a    b    e    j    l    s\n"
    assert ok(inst, "ls", "-1", "-R", "c3") == "c3:\na\nb\ne\nj\nl\ns\n\nc3.b:\nc\n\nc3.e:\n"
    assert ok(inst, "ls", "-1", "-d", "-F", "c3") == "c3.\n"
    assert ok(inst, "ls", "-1", "c3.a") == "c3.a\n"
    assert fails(inst, "dir", "c3.a") == "flux-kvs: c3.a: Not a directory\n"
    assert fails(inst, "ls", "c3.nope") == "c3.nope: No such file or directory\n"


def test_unlink_link_readlink_mkdir(inst):
    ok(inst, "put", "c4.d.x=1", "c4.v=1")
    assert fails(inst, "unlink", "c4.d") == "flux-kvs: cannot unlink 'c4.d': Directory not empty\n"
    assert fails(inst, "unlink", "c4.nope") == "flux-kvs: c4.nope: No such file or directory\n"
    ok(inst, "unlink", "-f", "c4.nope")
    ok(inst, "unlink", "-R", "c4.d", "c4.v")
    assert ok(inst, "ls", "-1", "c4") == ""
    ok(inst, "link", "-T", "otherns", "some.key", "c4.xlink")
    assert ok(inst, "readlink", "c4.xlink") == "otherns::some.key\n"
    assert ok(inst, "readlink", "-k", "c4.xlink") == "some.key\n"
    assert ok(inst, "readlink", "-o", "c4.xlink") == "otherns\n"
    assert "not a symlink" in fails(inst, "readlink", "c4")
    ok(inst, "mkdir", "c4.m1", "c4.m2")
    assert ok(inst, "ls", "-1", "-F", "c4") == "m1.\nm2.\nxlink@\n"


def test_copy_move_across_namespaces(inst):
    ok(inst, "put", "c5.src.a=1", "c5.src.b.c=2")
    ok(inst, "copy", "c5.src", "c5.copy")
    assert ok(inst, "dir", "-R", "c5.copy") == "c5.copy.a = 1\nc5.copy.b.c = 2\n"
    ok(inst, "namespace", "create", "c5ns")
    ok(inst, "move", "-D", "c5ns", "c5.src", "moved")
    assert ok(inst, "get", "-N", "c5ns", "moved.b.c") == "2\n"
    assert fails(inst, "get", "c5.src") == "flux-kvs: c5.src: No such file or directory\n"
    ok(inst, "move", "c5.copy", "c5.moved")
    assert ok(inst, "ls", "-1", "c5") == "moved\n"


def test_namespace_commands_and_env_default(inst):
    ok(inst, "namespace", "create", "-o", "4242", "c6ns")
    out = ok(inst, "namespace", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "OWNER", "FLAGS"]
    assert any(ln.split() == ["c6ns", "4242", "0x00000000"] for ln in lines[1:])
    assert "already exists" in fails(inst, "namespace", "create", "c6ns")
    ok(inst, "put", "-N", "c6ns", "k=v")
    assert ok(inst, "get", "k", env={"FLUX_KVS_NAMESPACE": "c6ns"}) == "v\n"
    assert ok(inst, "getroot", "-N", "c6ns", "-o") == "4242\n"
    assert ok(inst, "getroot", "-N", "c6ns", "-s") == "1\n"
    assert ok(inst, "getroot", "-N", "c6ns", "-b").startswith("sha1-")
    ok(inst, "namespace", "remove", "c6ns")
    assert "c6ns" not in ok(inst, "namespace", "list")
    assert "does not exist" in fails(inst, "namespace", "remove", "c6ns")


def test_version_wait_sync_dropcache(inst):
    v = int(ok(inst, "version"))
    ok(inst, "wait", str(v))
    p = subprocess.Popen([FLUX, "kvs", "wait", str(v + 1)], env=inst.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ok(inst, "put", "c7.bump=1")
    assert p.wait(timeout=30) == 0
    assert ok(inst, "sync", "-v").strip().isdigit()
    ok(inst, "dropcache")


def test_eventlog_commands(inst):
    ok(inst, "eventlog", "append", "-t", "1700000000.5", "c8.log", "submit",
       '{"userid": 1000, "urgency": 16}')
    ok(inst, "eventlog", "append", "-t", "1700000001.25", "c8.log", "start")
    assert ok(inst, "eventlog", "get", "c8.log") == (
        "1700000000.500000 submit userid=1000 urgency=16\n1700000001.250000 start\n")
    raw = ok(inst, "eventlog", "get", "-u", "c8.log").splitlines()
    assert json.loads(raw[0]) == {"timestamp": 1700000000.5, "name": "submit",
                                  "context": {"userid": 1000, "urgency": 16}}
    assert ok(inst, "eventlog", "get", "-H", "c8.log").splitlines()[1] == \
        "2023-11-14T22:13:21.250000Z start"
    assert ok(inst, "eventlog", "wait-event", "c8.log", "start") == "1700000001.250000 start\n"
    assert ok(inst, "eventlog", "wait-event", "-q", "c8.log", "start") == ""
    out = ok(inst, "eventlog", "wait-event", "-v", "c8.log", "start")
    assert out.count("\n") == 2
    r = kvs(inst, "eventlog", "wait-event", "-t", "0.2", "c8.log", "never")
    assert r.returncode == 1 and "wait-event timeout on event 'never'" in r.stderr
    assert "not a JSON object" in fails(inst, "eventlog", "append", "c8.log", "x", "[1]")
    ok(inst, "put", "c8.notlog=garbage")
    assert "not an RFC 18 eventlog" in fails(inst, "eventlog", "get", "c8.notlog")


def test_eventlog_watch_and_waitcreate(inst):
    p = subprocess.Popen([FLUX, "kvs", "eventlog", "get", "-W", "-w", "-c", "3", "c9.log"],
                         env=inst.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for i in range(3):
        ok(inst, "eventlog", "append", "-t", f"{i + 1}", "c9.log", f"ev{i}", f'{{"i": {i}}}')
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert out == "1.000000 ev0 i=0\n2.000000 ev1 i=1\n3.000000 ev2 i=2\n"
    w = subprocess.Popen([FLUX, "kvs", "eventlog", "wait-event", "-W", "c9.other", "done"],
                         env=inst.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ok(inst, "eventlog", "append", "-t", "5", "c9.other", "begin")
    ok(inst, "eventlog", "append", "-t", "6", "c9.other", "done", '{"rc": 0}')
    out, err = w.communicate(timeout=30)
    assert (w.returncode, out) == (0, "6.000000 done rc=0\n"), err


def test_get_watch_count_append_and_alias(inst):
    ok(inst, "put", "c10.k=0")
    p = subprocess.Popen([FLUX, "kvs", "get", "--watch", "--count=3", "c10.k"], env=inst.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the first value printed means the watch is registered
    assert p.stdout.readline() == "0\n"
    ok(inst, "put", "c10.k=1")
    ok(inst, "put", "c10.k=2")
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out) == (0, "1\n2\n"), err
    a = subprocess.Popen([FLUX, "kvs", "watch", "-W", "-A", "-c", "2", "c10.app"],
                         env=inst.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_watchers(inst, 1)  # else both appends could land before the watch starts
    ok(inst, "put", "-A", "c10.app=first")
    ok(inst, "put", "-A", "c10.app=second")
    out, err = a.communicate(timeout=30)
    assert (a.returncode, out) == (0, "first\nsecond\n"), err
    assert "--watch" in fails(inst, "get", "--count=2", "c10.k")
    assert "exactly one key" in fails(inst, "get", "-w", "c10.k", "c10.app")
