"""Config-file bootstrap (`[bootstrap]`), `flux keygen` and CURVE on the overlay, with
every "host" on this machine (TCP on 127.0.0.1, hosts told apart by FLUX_FAKE_HOSTNAME).
The same over real network namespaces is in test_multihost.py."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
import zmq
import zmq.auth
from bootconf import FLUX, ConfInstance, base_env, free_ports, toml_hosts, wait_log
from flux.core.broker.boot import select
from flux.core.broker.boot.config import ConfigBootstrap as boot
from flux.core.errors import FluxError
from flux.core.security import curve
from zmq.utils.monitor import parse_monitor_message


def keygen(path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([FLUX, "keygen", *args, str(path)], capture_output=True, text=True,
                          env=base_env())


@pytest.fixture
def cert(tmp_path):
    path = tmp_path / "curve.cert"
    r = keygen(path)
    assert r.returncode == 0, r.stderr
    return str(path)


# ------------------------------------------------------------------ keygen
def test_keygen_writes_a_curve_certificate(tmp_path):
    path = tmp_path / "c.cert"
    r = keygen(path, "--name=mycluster", "--meta=site=llnl,rack=3", "--meta=owner=flux")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    public, secret = zmq.auth.load_certificate(str(path))  # the ZPL format pyzmq/czmq read
    assert len(public) == 40 and len(secret) == 40
    c = curve.load(str(path))
    assert (c.public, c.secret) == (public, secret)
    assert c.name == "mycluster"
    assert c.metadata["site"] == "llnl" and c.metadata["rack"] == "3"
    assert c.metadata["owner"] == "flux"
    assert c.metadata["keygen.userid"] == str(os.getuid())
    # the key pair matches: the public key derives from the secret one
    assert zmq.curve_public(secret) == public
    # another run makes another key; an existing file is never replaced
    r2 = keygen(tmp_path / "d.cert")
    assert curve.load(str(tmp_path / "d.cert")).public != public
    r2 = keygen(path)
    assert r2.returncode == 1 and "File exists" in r2.stderr
    assert curve.load(str(path)).public == public


def test_keygen_without_path_and_bad_meta(tmp_path):
    r = subprocess.run([FLUX, "keygen"], capture_output=True, text=True, env=base_env())
    assert r.returncode == 0 and "add PATH argument" in r.stderr
    r = keygen(tmp_path / "x.cert", "--meta==v")
    assert r.returncode == 1 and "--meta: invalid key" in r.stderr
    assert not (tmp_path / "x.cert").exists()
    r = keygen(tmp_path / "nodir" / "x.cert")
    assert r.returncode == 1 and "No such file or directory" in r.stderr


def test_certificate_checks(tmp_path, cert):
    os.chmod(cert, 0o640)
    with pytest.raises(FluxError, match="readable or writable by group/other"):
        curve.load(cert)
    os.chmod(cert, 0o600)
    with pytest.raises(FluxError, match="not by the instance owner"):
        curve.load(cert, owner=os.getuid() + 1)
    pub = tmp_path / "pub.cert"
    c = curve.load(cert)
    pub.write_text(curve.dumps(curve.CurveCert(c.public, None)))
    os.chmod(pub, 0o600)
    with pytest.raises(FluxError, match="no secret-key"):
        curve.load(str(pub))
    bad = tmp_path / "bad.cert"
    bad.write_text('curve\n    public-key = "short"\n')
    os.chmod(bad, 0o600)
    with pytest.raises(FluxError, match="not a 40-character Z85 key"):
        curve.load(str(bad))
    with pytest.raises(FluxError, match="No such file"):
        curve.load(str(tmp_path / "missing"))


# --------------------------------------------------------- [bootstrap] parsing
def bs(hosts, cert=None, **kw) -> dict:
    t = {"hosts": hosts, **kw}
    if cert:
        t["curve_cert"] = cert
    return {"bootstrap": t}


def test_rank_and_endpoints_from_hosts(cert):
    conf = bs([{"host": "test0", "bind": "tcp://en4:9001", "connect": "tcp://test-mgmt:9001"},
               {"host": "test[1-5]"}], cert, default_port=8050,
              default_bind="tcp://en0:%p", default_connect="tcp://e%h:%p")
    b0 = boot(conf, {}, {"FLUX_FAKE_HOSTNAME": "test0"})
    assert (b0.rank, b0.size, b0.method) == (0, 6, "config")
    assert b0.attrs["tbon.endpoint"] == "tcp://en4:9001"
    assert "tbon.parent-endpoint" not in b0.attrs
    assert b0.attrs["hostlist"] == "test[0-5]" and b0.attrs["hostname"] == "test0"
    assert b0.curve is not None and b0.curve["allowed"] == {b0.curve["public"]}
    # custom topology without parent keys: rank 0 is everyone's parent; leaves bind nothing
    b3 = boot(conf, {"hostname": "test3"}, {"FLUX_FAKE_HOSTNAME": "test0"})  # -S wins
    assert b3.rank == 3 and b3.attrs["tbon.parent-endpoint"] == "tcp://test-mgmt:9001"
    assert "tbon.endpoint" not in b3.attrs
    # with a k-ary tree, test3's parent is test1: the default connect applies
    k = boot({**conf, "tbon": {"topo": "kary:2"}}, {"hostname": "test3.cluster.org"}, {})
    assert k.rank == 3 and k.attrs["tbon.parent-endpoint"] == "tcp://etest1:8050"
    k1 = boot(conf, {"hostname": "test1", "tbon.topo": "kary:2"}, {})
    assert k1.attrs["tbon.endpoint"] == "tcp://en0:8050"


def test_parent_keys_shape_the_tree(cert):
    conf = bs([{"host": "a", "bind": "tcp://*:1", "connect": "tcp://a:1"},
               {"host": "b", "bind": "tcp://*:2", "connect": "tcp://b:2"},
               {"host": "c", "parent": "b"}, {"host": "d", "parent": "c"}], cert)
    with pytest.raises(FluxError, match="host c has children but no bind endpoint"):
        boot(conf, {"hostname": "c"}, {})
    with pytest.raises(FluxError, match="host c .parent of d. has no connect endpoint"):
        boot(conf, {"hostname": "d"}, {})
    c = boot(conf, {"hostname": "b"}, {})
    assert c.parents == [None, 0, 1, 2]


@pytest.mark.parametrize("hosts,extra,attrs,match", [
    ([{"host": "x"}, {"host": "y"}], {}, {"hostname": "z"}, "hostname 'z' is not in hosts"),
    ([{"host": "x"}, {"host": "x"}], {}, {"hostname": "x"}, "host x appears more than once"),
    ([{"name": "x"}], {}, {"hostname": "x"}, "unknown key.s. name"),
    ([{"bind": "tcp://*:1"}], {}, {"hostname": "x"}, "hosts.0. has no 'host' key"),
    (["x"], {}, {"hostname": "x"}, "hosts.0. must be a table"),
    ("x", {}, {"hostname": "x"}, "hosts must be an array"),
    ([{"host": "x[1-"}], {}, {"hostname": "x"}, "hosts.0..host"),
    ([{"host": "x"}, {"host": "y"}], {"default_bind": "tcp://*:%p"}, {"hostname": "x"},
     "uses %p but default_port is not set"),
    ([{"host": "x"}], {"default_port": "80"}, {"hostname": "x"}, "default_port must be"),
    ([{"host": "x"}], {"enable_ipv6": "yes"}, {"hostname": "x"}, "enable_ipv6 must be"),
    ([{"host": "x"}], {"bogus": 1}, {"hostname": "x"}, "unknown key.s. bogus"),
    ([{"host": "x", "bind": "tcp://*:1", "connect": "tcp://x:1"}, {"host": "y", "parent": "q"}],
     {}, {"hostname": "x"}, "parent q is not in hosts"),
    ([{"host": "x", "parent": "y"}, {"host": "y", "bind": "tcp://*:1", "connect": "tcp://x:1"}],
     {}, {"hostname": "x"}, "rank 0 cannot have a parent"),
    ([{"host": "x"}, {"host": "y", "parent": "z"}, {"host": "z", "parent": "y"}],
     {}, {"hostname": "x"}, "parents form a cycle"),
])
def test_bad_bootstrap_config(cert, hosts, extra, attrs, match):
    with pytest.raises(FluxError, match=match):
        boot(bs(hosts, cert, **extra), attrs, {})


def test_curve_cert_required_above_one_broker(tmp_path):
    conf = bs([{"host": "x", "bind": "tcp://*:1", "connect": "tcp://x:1"}, {"host": "y"}])
    with pytest.raises(FluxError, match="curve_cert is required"):
        boot(conf, {"hostname": "x"}, {})
    single = boot({"bootstrap": {}}, {}, {})
    assert (single.rank, single.size, single.curve) == (0, 1, None)
    # --test-size brokers stay unencrypted unless a certificate is configured
    assert select({}, {}, 1, 2).curve is None and select({}, {}, 1, 2).method == "test"


def test_broker_reports_config_errors_and_exits(tmp_path, cert):
    conf = tmp_path / "boot.toml"
    conf.write_text(f'[bootstrap]\ncurve_cert = "{cert}"\n' + toml_hosts(
        [{"host": "a", "bind": "tcp://127.0.0.1:1", "connect": "tcp://127.0.0.1:1"}, {"host": "b"}]))
    env = dict(base_env(), FLUX_FAKE_HOSTNAME="nothere")
    r = subprocess.run([FLUX, "start", f"--conf={conf}", "true"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 1
    assert "hostname 'nothere' is not in hosts (a,b)" in r.stderr
    os.chmod(cert, 0o644)
    env["FLUX_FAKE_HOSTNAME"] = "b"
    r = subprocess.run([FLUX, "broker", f"--config-path={tmp_path}", "true"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 1 and "readable or writable by group/other" in r.stderr


# ------------------------------------------------------------ live instances
def write_conf(tmp_path, cert, hosts, name="boot.toml") -> str:
    path = tmp_path / name
    path.write_text(f'[bootstrap]\ncurve_cert = "{cert}"\n' + toml_hosts(hosts))
    return str(path)


@pytest.fixture
def three(tmp_path, cert):
    """node0 <- node1 <- node2 (a custom tree from parent keys), TCP with CURVE."""
    p = free_ports(2)
    hosts = [{"host": "node0", "bind": f"tcp://127.0.0.1:{p[0]}", "connect": f"tcp://127.0.0.1:{p[0]}"},
             {"host": "node1", "bind": f"tcp://127.0.0.1:{p[1]}", "connect": f"tcp://127.0.0.1:{p[1]}"},
             {"host": "node2", "parent": "node1"}]
    conf = write_conf(tmp_path, cert, hosts)
    inst = ConfInstance(conf, ["node0", "node1", "node2"])
    inst.conf, inst.ports, inst.hostdefs = conf, p, hosts
    yield inst
    inst.stop()


def test_instance_from_config_over_tcp(three):
    r = three.flux("getattr", "size")
    assert r.stdout.strip() == "3", r.stderr
    assert three.flux("getattr", "hostlist").stdout.strip() == "node[0-2]"
    assert three.flux("getattr", "broker.boot-method").stdout.strip() == "config"
    assert three.flux("getattr", "tbon.topo").stdout.strip() == "custom"
    status = three.flux("overlay", "status").stdout
    assert status.splitlines() == ["0 node0: full", "└─ 1 node1: full", "   └─ 2 node2: full"]
    r = three.flux("exec", "-r", "all", "sh", "-c",
                   'echo "$(flux getattr rank) $(flux getattr hostname) $(flux getattr tbon.parent-endpoint)"')
    lines = sorted(r.stdout.splitlines())
    assert lines[0] == "0 node0 "
    assert lines[1] == f"1 node1 tcp://127.0.0.1:{three.ports[0]}"
    assert lines[2] == f"2 node2 tcp://127.0.0.1:{three.ports[1]}"
    r = three.flux("run", "-N3", "-n3", "--label-io", "sh", "-c", "flux getattr hostname")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["0:", "1:", "2:", "node0", "node1", "node2"]
    assert three.stop() == [0, 0, 0]


def test_broker_with_another_key_cannot_join(tmp_path, three):
    other = tmp_path / "other.cert"
    assert keygen(other).returncode == 0
    rogue_conf = write_conf(tmp_path, str(other), three.hostdefs, "rogue.toml")
    env = dict(base_env(), FLUX_FAKE_HOSTNAME="node2")
    r = subprocess.run([FLUX, "start", f"--conf={rogue_conf}"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 1
    assert "parent rank 1 refused this broker" in r.stderr
    # the real node2 is still there, and node1 logged the drop (forwarded to rank 0)
    wait_log(three.env, "broker.err[1]: overlay: dropped a peer that failed the handshake")
    assert three.flux("overlay", "status").stdout.splitlines()[-1] == "   └─ 2 node2: full"
    r = three.flux("run", "-N3", "hostname")
    assert r.returncode == 0 and len(r.stdout.split()) == 3


def _raw_peer(endpoint: str, keys: tuple[bytes, bytes, bytes] | None) -> int:
    """Connect a bare DEALER (as rank 1 would) and return the handshake failure event."""
    ctx = zmq.Context()
    try:
        d = ctx.socket(zmq.DEALER)
        d.identity = b"1"
        if keys:
            d.curve_publickey, d.curve_secretkey, d.curve_serverkey = keys
        m = d.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                 | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        d.connect(endpoint)
        ev = parse_monitor_message(m.recv_multipart())["event"]
        d.close(0)
        return ev
    finally:
        ctx.destroy(0)


def test_peers_without_the_key_are_dropped_and_logged(three, cert):
    ep = f"tcp://127.0.0.1:{three.ports[0]}"
    server_public = curve.load(cert).public
    # knows the server's (public) key but holds another key pair: ZAP refuses it
    pub, sec = zmq.curve_keypair()
    assert _raw_peer(ep, (pub, sec, server_public)) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    # no CURVE at all
    assert _raw_peer(ep, None) != zmq.EVENT_HANDSHAKE_SUCCEEDED
    wait_log(three.env, "overlay: refused connection from 127.0.0.1: its CURVE key is not the "
                        "instance's certificate")
    wait_log(three.env, "broker.err[0]: overlay: dropped a peer that failed the handshake")
    # a peer holding the certificate does get through (the check is not simply closed)
    c = curve.load(cert)
    assert _raw_peer(ep, (c.public, c.secret, c.public)) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert three.flux("run", "-N3", "true").returncode == 0
    assert three.flux("overlay", "status").stdout.startswith("0 node0: full")


def test_test_size_with_curve_cert(make_instance, cert):
    inst = make_instance(2, conf=[f"bootstrap.curve_cert={cert}"])
    r = inst.flux("exec", "-r", "all", "flux", "getattr", "rank")
    assert sorted(r.stdout.split()) == ["0", "1"], r.stderr
    assert inst.flux("getattr", "broker.boot-method").stdout.strip() == "test"
