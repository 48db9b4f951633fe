"""Names of flux-core's Python bindings that tools reach for: flux.idset.IDset,
flux.hostlist.Hostlist, flux.resource (ResourceSet, resource_list), lazily loaded
submodules (flux.resource.list after `import flux`, flux.job.list after
`import flux.job`), the handle's reactor_run(reactor, flags) and conf_get()."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest

R2 = {"version": 1, "execution": {
    "R_lite": [{"rank": "0-1", "children": {"core": "0-3"}},
               {"rank": "2", "children": {"core": "0-1", "gpu": "0"}}],
    "nodelist": ["node[0-2]"], "properties": {"big": "0-1"}}}


# ----------------------------------------------------------------- IDset


def test_idset_encode_set_algebra_and_errors():
    from flux.idset import IDSET_FLAG_BRACKETS, IDSET_FLAG_RANGE, IDSET_INVALID_ID, IDset

    ids = IDset("0-3,7")
    assert str(ids) == "0-3,7" and len(ids) == 5 and ids.count() == 5
    assert list(ids) == [0, 1, 2, 3, 7] and 7 in ids and 5 not in ids and ids[3]
    assert repr(ids) == "IDset('0-3,7')"
    assert ids.encode(flags=0) == "0,1,2,3,7"
    assert ids.encode(flags=IDSET_FLAG_RANGE | IDSET_FLAG_BRACKETS) == "[0-3,7]"
    assert IDset([3, 1, 2]) == IDset("1-3") == IDset({1, 2, 3}) and IDset(5).expand() == [5]
    assert str(IDset("0-3") + "5") == "0-3,5" and str(IDset("0-3") | [9]) == "0-3,9"
    assert str(IDset("0-9") - "2-8") == "0-1,9" and str(IDset("0-9") & "5,11") == "5"
    assert str(IDset().set(0, 3).clear(1)) == "0,2-3"
    ids[10] = True
    ids[0] = False
    assert str(ids) == "1-3,7,10"
    assert (ids.first(), ids.last(), ids.next(3), ids.next(10)) == (1, 10, 7, IDSET_INVALID_ID)
    copy = ids.copy()
    copy.add("20")
    assert 20 not in ids and 20 in copy
    assert str(IDset("5-7").union("1", [3]).intersect("1-6").difference("6")) == "1,3,5"
    for bad in ("1-", "a", "3-1"):
        with pytest.raises(ValueError, match="Invalid argument"):
            IDset(bad)
    with pytest.raises(ValueError, match="negative"):
        IDset([-1])
    with pytest.raises(TypeError):
        IDset(1.5)


# -------------------------------------------------------------- Hostlist


def test_hostlist_index_slice_append_delete():
    from flux.hostlist import Hostlist, decode

    hl = Hostlist("foo[0-4]-eth2,bar")
    assert len(hl) == 6 and hl[0] == "foo0-eth2" and hl[-1] == "bar"
    assert hl[1:3] == ["foo1-eth2", "foo2-eth2"] and "bar" in hl and "baz" not in hl
    assert str(Hostlist(["node1", "node[2-3]", "node5"])) == "node[1-3,5]"
    assert Hostlist("foo[1,1,2]").expand() == ["foo1", "foo1", "foo2"]  # duplicates kept
    assert str(Hostlist("n[00-02]")) == "n[00-02]"
    hl = decode("n[3,1,2,1]")
    assert hl.append("m1", Hostlist("m2")) == 2
    assert hl.delete("n1") == 2 and str(hl) == "n[3,2],m[1-2]"
    assert str(hl.copy().sort()) == "m[1-2],n[2-3]" and str(Hostlist("b2,a1,b2").uniq()) == "a1,b2"
    assert hl.find("m1") == 2
    with pytest.raises(FileNotFoundError):
        hl.find("zz")
    with pytest.raises(IndexError):
        hl[10]
    with pytest.raises(ValueError, match="Invalid hostlist"):
        Hostlist("foo[1-")
    with pytest.raises(TypeError):
        Hostlist([1, 2])


# ----------------------------------------------------------- ResourceSet


def test_resource_set_counts_algebra_and_encoding():
    from flux.hostlist import Hostlist
    from flux.idset import IDset
    from flux.resource import ResourceSet

    rs = ResourceSet(R2)
    assert (rs.nnodes, rs.ncores, rs.ngpus) == (3, 10, 1)
    assert rs.count("core") == 10 and rs.count("gpu") == 1
    assert rs.ranks == IDset("0-2") and rs.nodelist == Hostlist("node[0-2]")
    assert rs.dumps() == str(rs) == "rank[0-1]/core[0-3] rank2/core[0-1],gpu0"
    assert rs.properties == "big"
    again = ResourceSet(rs.encode())
    assert again == rs and json.loads(again.encode())["execution"]["nodelist"] == ["node[0-2]"]
    assert rs.host_ranks("node[1-2]") == [1, 2]
    assert rs.host_ranks("node9,node0", ignore_nomatch=True) == [0]
    with pytest.raises(FileNotFoundError):
        rs.host_ranks("node9")

    down = rs.copy_ranks("1")
    up = rs - down
    assert up.ranks == IDset("0,2") and up.ncores == 6  # rank 1 is gone, not empty
    part = ResourceSet({"version": 1, "execution": {
        "R_lite": [{"rank": "0", "children": {"core": "0-1"}}]}})
    assert (rs - part).ncores == 8 and (rs - part).nnodes == 3
    assert (rs & part).ncores == 2 and (rs & part).nnodes == 1
    assert (up | down) == rs.copy_ranks("0-2") and (up | down).ncores == 10
    rs2 = ResourceSet().append(down)
    assert rs2.ranks == IDset("1")
    with pytest.raises(ValueError, match="already present"):
        rs2.append(down)
    assert rs.copy().remove_ranks("0-1").ranks == IDset("2")
    assert json.loads(rs.copy().set_property("gpu", "2").get_properties())["gpu"] == "2"
    empty = ResourceSet()
    assert (empty.nnodes, empty.ncores, str(empty.ranks)) == (0, 0, "")
    with pytest.raises(ValueError, match="version 2 not supported"):
        ResourceSet({"version": 2})
    with pytest.raises(ValueError):
        ResourceSet({"version": 1, "execution": {"R_lite": "nope"}})
    with pytest.raises(TypeError):
        ResourceSet(42)


# ------------------------------------------- names a real instance serves


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(2)
    yield i
    i.stop()


def test_resource_list_through_lazy_names(inst):
    """executorlib's `flux.resource.list.resource_list(h).get().up.ncores`, with only
    `import flux` done; PSI/J-style constants; Maestro's flux.job.list.JobList."""
    code = """if True:
        import os, sys
        import flux
        h = flux.Flux()
        rl = flux.resource.list.resource_list(h).get()
        print(rl.up.ncores == rl.all.ncores > 0, rl.all.nnodes, rl.free.nnodes,
              rl["down"].ncores, rl.allocated.ncores, rl.up.state, rl.free.state)
        print(flux.constants.FLUX_JOB_STATE_ACTIVE, flux.constants.FLUX_JOB_PENDING)
        import flux.job
        print(flux.job.list.JobList.__name__, flux.job.executor.FluxExecutor.__name__)
        try:
            flux.nonexistent
        except AttributeError as exc:
            print("AttributeError", exc)
    """
    r = subprocess.run([sys.executable, "-c", code], env=inst.env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "True 2 2 0 0 up free", "62 14", "JobList FluxExecutor",
        "AttributeError module 'flux' has no attribute 'nonexistent'"]


def test_resource_list_sees_allocations_and_fallback_topics(inst, monkeypatch):
    import flux
    import flux.job
    from flux.job import JobspecV1
    from flux.resource import resource_list

    h = inst.handle()
    total = resource_list(h).get().all.ncores
    jobid = flux.job.submit(h, JobspecV1.from_command(["sleep", "30"], num_tasks=1,
                                                      cores_per_task=2))
    flux.job.event_wait(h, jobid, "start")
    rl = resource_list(h).get()
    assert rl.allocated.ncores == 2 and rl.free.ncores == total - 2
    # then() from the reactor; the topic can be chosen as flux-core allows
    monkeypatch.setenv("FLUX_RESOURCE_LIST_RPC", "sched.resource-status")
    seen = []
    resource_list(h).then(lambda f: seen.append(f.get().allocated.ncores))
    h.reactor_run()
    assert seen == [2]
    monkeypatch.setenv("FLUX_RESOURCE_LIST_RPC", "nosuch.service")
    monkeypatch.setattr("flux.resource.list.FALLBACK_TOPIC", "nosuch.either")
    with pytest.raises(OSError) as err:  # ENOSYS from both: no silent empty answer
        resource_list(h).get()
    assert err.value.errno == errno.ENOSYS and "nosuch.either" in str(err.value)
    flux.job.cancel(h, jobid)


def test_reactor_run_signature_and_conf_get(inst):
    h = inst.handle()
    fired = []
    h.timer_watcher_create(0.01, lambda *a: fired.append(1)).start()
    # flux-core's signature: reactor_run(reactor=None, flags=0), as scripts call it
    assert h.reactor_run(h.get_reactor(), 0) == 0 and fired == [1]
    w = h.timer_watcher_create(0.01, lambda hh, *a: hh.reactor_stop(), repeat=0.01).start()
    assert h.reactor_run() == 1  # stopped with the repeating timer still active
    w.stop()
    h.timer_watcher_create(0.01, lambda hh, *a: hh.reactor_stop_error()).start()
    assert h.reactor_run() == -1
    assert h.conf_get() == {} and h.conf_get("tbon.topo", default="kary:32") == "kary:32"


def test_job_kvs_dirs_and_core_handle(inst):
    import flux
    import flux.job
    from flux.core.handle import Flux
    from flux.job import JobspecV1

    assert Flux is flux.Flux
    h = inst.handle()
    jobid = flux.job.submit(h, JobspecV1.from_command(["sh", "-c", "echo kvs"]))
    flux.job.result(h, jobid)
    d = flux.job.job_kvs(h, jobid)
    assert {"eventlog", "jobspec", "R", "guest"} <= set(d.keys())
    assert d["jobspec"]["tasks"][0]["command"] == ["sh", "-c", "echo kvs"]
    assert {"exec", "output"} <= set(flux.job.job_kvs_guest(h, jobid).keys())
    with pytest.raises(FileNotFoundError):
        flux.job.job_kvs(h, 12345)


def test_error_responses_are_errno_subclasses(inst):
    """flux-core raises OSError(errno, msg), which Python turns into FileNotFoundError,
    PermissionError...; scripts catch those."""
    import pickle

    import flux
    import flux.job
    import flux.kvs
    from flux.core.errors import FluxError

    h = inst.handle()
    with pytest.raises(FileNotFoundError):
        flux.kvs.get(h, "no.such.key")
    with pytest.raises(FileNotFoundError):
        next(flux.job.event_watch(h, 12345))
    with pytest.raises(OSError) as err:
        h.rpc("no-such-service.method").get()
    assert err.value.errno == errno.ENOSYS and isinstance(err.value, FluxError)
    e = FluxError(errno.EPERM, "not yours")
    assert isinstance(e, PermissionError) and isinstance(e, flux.FluxError)
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is type(e) and (again.errno, again.strerror) == (errno.EPERM, "not yours")
    assert type(FluxError(errno.EINVAL)) is FluxError


def test_future_then_timeout_futureext_waitall(inst):
    """flux-core's future API: then(cb, *args, timeout=), error_string(), FutureExt
    (fulfilled from Python, initialised on first use) and WaitAllFuture."""
    from flux.future import FutureExt, WaitAllFuture

    h = inst.handle()

    def init(fut, name):
        fut.get_flux().rpc("attr.get", {"name": name}).then(
            lambda f: fut.fulfill(f.get()["value"]))

    assert FutureExt(init, "size", flux_handle=h).get() == "2"  # blocking: init runs
    got = []
    FutureExt(init, "rank", flux_handle=h).then(lambda f, tag: got.append((tag, f.get())), "r")
    h.reactor_run()
    assert got == [("r", "0")]

    both = WaitAllFuture([h.rpc("attr.get", {"name": "rank"}), h.rpc("attr.get", {"name": "size"})])
    both.get()
    assert [c.get()["value"] for c in both.children] == ["0", "2"]
    order = []
    w = WaitAllFuture()
    first = h.rpc("attr.get", {"name": "rank"}).then(lambda f: order.append("child"))
    w.push(first)
    w.push(h.rpc("attr.get", {"name": "nosuchattr"}))
    w.then(lambda f: order.append("all"))
    h.reactor_run()
    assert order == ["child", "all"]
    with pytest.raises(FileNotFoundError):  # the failed child's error
        w.get()

    # then(..., timeout=): a future nobody fulfills times out with ETIMEDOUT
    seen = []
    never = FutureExt(lambda f: None, flux_handle=h)
    never.then(lambda f: seen.append(f.error_string()), timeout=0.05)
    h.reactor_run()
    assert seen == ["Connection timed out"]
    with pytest.raises(TimeoutError):
        never.get()
    with pytest.raises(ValueError):
        h.rpc("attr.get", {"name": "rank"}).then(None)
