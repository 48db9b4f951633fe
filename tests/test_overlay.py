"""The tree-based overlay: shapes, status, and brokers that die.

Lost brokers are found without sleeping: the test waits on the future of a request
(which must fail with EHOSTUNREACH, never hang) or on a pidfd for a process exit.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import time

import flux
import pytest

FAST = ["tbon.torpid_max=3s", "tbon.torpid_min=1s", "heartbeat.period=0.5s"]


def broker_pid(h, rank: int) -> int:
    return int(h.rpc("attr.get", {"name": "broker.pid"}, nodeid=rank).get()["value"])


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait for any process (not only a child) to exit, through a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def topology(h, rank=0):
    return h.rpc("overlay.topology", {"rank": rank}).get()


def kids(node):
    return [c["rank"] for c in node["children"]]


# ------------------------------------------------------------------ shapes
def test_default_fanout_is_2(make_instance):
    inst = make_instance(5)
    h = inst.handle()
    top = topology(h)
    assert kids(top) == [1, 2] and top["size"] == 5
    assert kids(top["children"][0]) == [3, 4] and kids(top["children"][1]) == []
    assert h.attr_get("tbon.topo") == "kary:2"
    assert h.rpc("attr.get", {"name": "tbon.level"}, nodeid=4).get()["value"] == "2"
    assert h.attr_get("tbon.maxlevel") == "2" and h.attr_get("tbon.descendants") == "4"


@pytest.mark.parametrize("topo,children0,parent_of_last", [
    ("kary:3", [1, 2, 3], 1),   # 7 brokers: 0 -> 1,2,3; 1 -> 4,5,6
    ("kary:1", [1], 5),         # a chain
    ("kary:0", [1, 2, 3, 4, 5, 6], 0),  # flat: rank 0 is everyone's parent
])
def test_configurable_fanout(make_instance, topo, children0, parent_of_last):
    inst = make_instance(7, setattrs=[f"tbon.topo={topo}"])
    h = inst.handle()
    assert kids(topology(h)) == children0
    r = inst.flux("overlay", "parentof", "6", check=True)
    assert r.stdout.strip() == str(parent_of_last)
    # requests still reach the deepest rank
    assert h.rpc("broker.ping", {}, nodeid=6).get()["rank"] == 6


def test_bad_topology_is_a_clear_error(tmp_path):
    import subprocess

    from conftest import FLUX

    r = subprocess.run([FLUX, "start", "--test-size=2", "-Stbon.topo=ring", "true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "unknown tbon.topo 'ring'" in r.stderr
    assert "Traceback" not in r.stderr


def test_overlay_status_and_test_hosts(make_instance):
    inst = make_instance(7, extra=["--test-hosts=node[0-6]"])
    r = inst.flux("overlay", "status", check=True)
    assert r.stdout.splitlines() == [
        "0 node0: full",
        "├─ 1 node1: full",
        "│  ├─ 3 node3: full",
        "│  └─ 4 node4: full",
        "└─ 2 node2: full",
        "   ├─ 5 node5: full",
        "   └─ 6 node6: full",
    ]
    h = inst.handle()
    assert h.attr_get("hostlist") == "node[0-6]"
    assert h.rpc("attr.get", {"name": "hostname"}, nodeid=5).get()["value"] == "node5"
    assert inst.flux("overlay", "status", "--summary").stdout.strip() == "0 node0: full"


def test_test_hosts_must_cover_size(make_instance):
    import subprocess

    from conftest import FLUX

    r = subprocess.run([FLUX, "start", "--test-size=3", "--test-hosts=a[0-1]", "true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "--test-hosts lists 2 hosts, fewer than --test-size=3" in r.stderr


# ------------------------------------------------------------- lost brokers
def test_killed_leaf_is_noticed_and_nothing_hangs(make_instance):
    inst = make_instance(7, setattrs=FAST)
    h = inst.handle()
    pid6 = broker_pid(h, 6)
    # a stream in flight to rank 6 when it dies
    stream = h.rpc("rexec.exec", {"cmd": {"cmdline": ["sleep", "300"]}}, nodeid=6,
                   flags=flux.constants.FLUX_RPC_STREAMING)
    sleeper = stream.wait_for(10).get()["pid"]
    stream.reset()
    try:
        t0 = time.monotonic()
        os.kill(pid6, signal.SIGKILL)
        # the request in flight fails, it does not hang
        with pytest.raises(OSError) as ei:
            stream.wait_for(10).get()
        assert ei.value.errno == errno.EHOSTUNREACH
        assert "rank 6 was lost" in ei.value.strerror
        # so does a new request to the lost rank
        with pytest.raises(OSError) as ei:
            h.rpc("broker.ping", {}, nodeid=6).wait_for(10).get()
        assert ei.value.errno == errno.EHOSTUNREACH
        assert time.monotonic() - t0 < 8
    finally:
        os.kill(sleeper, signal.SIGKILL)  # the dead broker's orphan
    # everyone else is fine
    for r in (0, 1, 2, 5):
        assert h.rpc("broker.ping", {}, nodeid=r).wait_for(10).get()["rank"] == r
    # rank 2 noticed and logged it; the log was forwarded to rank 0
    dmesg = inst.flux("dmesg", check=True).stdout
    assert "broker.err[2]: overlay: lost child rank 6" in dmesg
    status = inst.flux("overlay", "status", check=True).stdout.splitlines()
    assert re.fullmatch(r"0 \S+: degraded", status[0])  # something below is lost
    assert re.fullmatch(r"└─ 2 \S+: degraded", status[4])
    assert re.fullmatch(r"   └─ 6 \S+: lost", status[6])
    assert re.fullmatch(r"   ├─ 5 \S+: full", status[5])
    # flux exec on all ranks reports the lost one and returns
    r = inst.flux("exec", "-r", "all", "true", timeout=30)
    assert r.returncode != 0
    assert "rank 6" in r.stderr
    # and the instance still shuts down, cleanly and fast
    t0 = time.monotonic()
    assert inst.stop(timeout=30) == 0
    assert time.monotonic() - t0 < 10


def test_killed_parent_child_logs_and_exits(make_instance):
    """A chain 0 -> 1 -> 2: kill rank 1; rank 2 notices its parent is gone, logs it
    and exits; rank 0 notices its lost child; the instance shuts down cleanly."""
    inst = make_instance(3, setattrs=FAST + ["tbon.topo=kary:1", "log-stderr-mode=local"])
    h = inst.handle()
    pid1, pid2 = broker_pid(h, 1), broker_pid(h, 2)
    os.kill(pid1, signal.SIGKILL)
    assert wait_exit(pid2, 15), "rank 2 kept running without its parent"
    with pytest.raises(OSError) as ei:
        h.rpc("broker.ping", {}, nodeid=2).wait_for(10).get()
    assert ei.value.errno == errno.EHOSTUNREACH
    assert "lost child rank 1" in inst.flux("dmesg", check=True).stdout
    t0 = time.monotonic()
    assert inst.stop(timeout=30) == 0
    assert time.monotonic() - t0 < 10
    # with log-stderr-mode=local, rank 2 printed its own error before exiting
    assert "broker.err[2]: overlay: lost connection to parent rank 1; shutting down" in inst.stderr


def test_silent_child_is_lost_after_torpid_max(make_instance):
    """A child that stops answering without closing its socket (SIGSTOP) is found by
    the keepalive timeout instead of the socket monitor."""
    inst = make_instance(3, setattrs=["tbon.torpid_max=1s", "heartbeat.period=0.2s"])
    h = inst.handle()
    pid2 = broker_pid(h, 2)
    os.kill(pid2, signal.SIGSTOP)
    try:
        with pytest.raises(OSError) as ei:
            h.rpc("broker.ping", {}, nodeid=2).wait_for(10).get()
        assert ei.value.errno == errno.EHOSTUNREACH
        assert "lost child rank 2: silent for" in inst.flux("dmesg", check=True).stdout
    finally:
        os.kill(pid2, signal.SIGKILL)
        os.kill(pid2, signal.SIGCONT)
    assert h.rpc("broker.ping", {}, nodeid=1).get()["rank"] == 1
    assert inst.stop(timeout=30) == 0


def test_killed_rank0_takes_the_tree_down(make_instance):
    inst = make_instance(3, setattrs=FAST)
    h = inst.handle()
    pids = [broker_pid(h, r) for r in range(3)]
    h.close()
    os.kill(pids[0], signal.SIGKILL)
    for p in pids[1:]:
        assert wait_exit(p, 15), "a child broker outlived rank 0"
    inst.proc.stdin.close()
    assert inst.proc.wait(timeout=30) == 128 + signal.SIGKILL


def test_children_that_never_join_are_reported_and_start_can_be_stopped(tmp_path):
    """Brokers pointed at a parent endpoint that does not exist never join: rank 0
    says what it waits for, and SIGTERM still stops the instance promptly."""
    import subprocess

    from conftest import FLUX

    proc = subprocess.Popen(
        [FLUX, "start", "--test-size=3", f"--rundir={tmp_path}", "-Stbon.torpid_max=1s",
         "-Sheartbeat.period=0.2s", f"-Stbon.parent-endpoint=ipc://{tmp_path}/nowhere", "true"],
        stderr=subprocess.PIPE)
    try:
        err = b""  # read with os.read behind select: a buffered reader could hide data
        while b"still waiting" not in err:
            assert select.select([proc.stderr], [], [], 15)[0], "no warning from rank 0"
            data = os.read(proc.stderr.fileno(), 4096)
            assert data, "flux start exited early"
            err += data
        assert b"overlay: still waiting for child rank(s) 1, 2 to join" in err
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
