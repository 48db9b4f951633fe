"""One instance across "hosts": network namespaces joined by a bridge, each with its
own IP address, hostname (a UTS namespace) and broker, bootstrapped from one TOML
host list, the overlay on TCP with CURVE. Needs root (ip netns, unshare)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import zmq
from bootconf import FLUX, ConfInstance, base_env, wait_log
from flux.core.security import curve

pytestmark = [pytest.mark.root, pytest.mark.slow]

PORT = 8050


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns) and UTS namespaces"
    for tool in ("ip", "unshare", "hostname"):
        if shutil.which(tool) is None:
            return f"needs the '{tool}' command"
    name = f"fxprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


_skip = _why_not()
if _skip:
    pytest.skip(_skip, allow_module_level=True)


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


class Lab:
    """N hosts on one bridge (in its own namespace: nothing touches this machine's
    network). Host i is namespace `<tag>h<i>` with eth0 = 10.231.<net>.<i+1>/24 and
    /etc/hosts naming every host (ip netns exec mounts /etc/netns/<ns>/hosts)."""

    def __init__(self, names: list[str], net: int):
        self.tag = f"fx{os.getpid() % 100000}n{net}"
        self.names = names
        self.addr = {n: f"10.231.{net}.{i + 1}" for i, n in enumerate(names)}
        self.ns = {n: f"{self.tag}h{i}" for i, n in enumerate(names)}
        self.switch = f"{self.tag}sw"
        self.made: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def up(self) -> Lab:
        ip("netns", "add", self.switch)
        self.made.append(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in self.addr.items())
        for i, name in enumerate(self.names):
            ns = self.ns[name]
            ip("netns", "add", ns)
            self.made.append(ns)
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/hosts", "w") as f:
                f.write(hosts_file)
            a, b = f"{self.tag}a{i}", f"{self.tag}b{i}"
            ip("link", "add", a, "type", "veth", "peer", "name", b)
            ip("link", "set", a, "netns", ns)
            ip("link", "set", b, "netns", self.switch)
            ip("-n", ns, "link", "set", a, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.addr[name]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", self.switch, "link", "set", b, "master", "br0")
            ip("-n", self.switch, "link", "set", b, "up")
        return self

    def launch(self, host: str, cmd: list[str], hostname: str | None = None) -> list[str]:
        """cmd run in host's namespaces, with the host's own hostname."""
        return ["ip", "netns", "exec", self.ns[host], "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', hostname or host, *cmd]

    def run(self, host: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.launch(host, cmd), capture_output=True, text=True,
                              env=base_env(), timeout=60, **kw)

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self.made = []


@pytest.fixture
def lab_factory():
    labs: list[Lab] = []

    def make(names: list[str]) -> Lab:
        lab = Lab(names, len(labs) + 1)
        labs.append(lab)  # registered before up(): a half-made lab is cleaned too
        return lab.up()

    yield make
    for lab in labs:
        lab.down()


def write_conf(path, cert: str, hostlist: str) -> str:
    path.write_text(f"""[bootstrap]
curve_cert = "{cert}"
default_port = {PORT}
default_bind = "tcp://eth0:%p"
default_connect = "tcp://%h:%p"
hosts = [ {{ host = "{hostlist}" }} ]
""")
    return str(path)


def keygen(path) -> str:
    r = subprocess.run([FLUX, "keygen", str(path)], capture_output=True, text=True, env=base_env())
    assert r.returncode == 0, r.stderr
    return str(path)


@pytest.fixture
def cluster(tmp_path, lab_factory):
    """host0..host2, one broker each, plus an idle 'intruder' host on the same bridge."""
    lab = lab_factory(["host0", "host1", "host2", "intruder"])
    cert = keygen(tmp_path / "curve.cert")
    conf = write_conf(tmp_path / "system.toml", cert, "host[0-2]")
    inst = ConfInstance(conf, ["host0", "host1", "host2"], launch=lab.launch, fake_hostname=False)
    lab.procs += inst.procs
    inst.lab, inst.cert, inst.tmp = lab, cert, tmp_path
    yield inst
    inst.stop()


def test_one_instance_across_three_hosts(cluster):
    lab = cluster.lab
    assert cluster.flux("getattr", "size").stdout.strip() == "3"
    assert cluster.flux("getattr", "hostlist").stdout.strip() == "host[0-2]"
    # each broker runs on its own host: hostname and address differ
    r = cluster.flux("exec", "-r", "all", "--label-io", "hostname")
    assert sorted(r.stdout.split()) == ["0:", "1:", "2:", "host0", "host1", "host2"], r.stderr
    r = cluster.flux("exec", "-r", "all", "sh", "-c",
                     "echo $(flux getattr rank) $(ip -4 -o addr show eth0 | awk '{print $4}')")
    assert sorted(r.stdout.splitlines()) == [
        f"{rank} {lab.addr[f'host{rank}']}/24" for rank in range(3)], r.stderr
    r = cluster.flux("exec", "-r", "1-2", "flux", "getattr", "tbon.parent-endpoint")
    assert r.stdout.split() == [f"tcp://host0:{PORT}"] * 2
    # the overlay is TCP between the hosts' addresses
    r = lab.run("host0", ["sh", "-c", f"cat /proc/net/tcp | grep -ci ':{PORT:04X} '"])
    assert int(r.stdout.strip() or 0) >= 3, r.stdout  # the listener and two peers
    # a job spans the three hosts: exec and the shells use the overlay
    r = cluster.flux("run", "-N3", "-n6", "--label-io", "hostname")
    assert r.returncode == 0, r.stderr
    by_task = dict(line.split(": ") for line in r.stdout.splitlines())
    assert sorted(by_task.values()) == ["host0", "host0", "host1", "host1", "host2", "host2"]
    assert cluster.flux("overlay", "status").stdout.splitlines() == [
        "0 host0: full", "├─ 1 host1: full", "└─ 2 host2: full"]
    assert cluster.stop() == [0, 0, 0]


def test_overlay_traffic_is_encrypted(cluster):
    """Capture host0's link while a job's output crosses the overlay: the bytes pass,
    the text never appears in clear."""
    lab = cluster.lab
    cap = cluster.tmp / "capture.bin"
    sniffer = subprocess.Popen(
        # host0's port on the bridge: rank 0 is every other broker's parent
        ["ip", "netns", "exec", lab.switch, sys.executable, "-c", SNIFF, f"{lab.tag}b0", str(cap)],
        stdout=subprocess.PIPE, text=True)
    lab.procs.append(sniffer)
    assert sniffer.stdout.readline().strip() == "capturing"
    # control: text sent in clear over the same link is seen by the capture
    control = "capture-control-" + "5" * 40
    lab.run("host1", [sys.executable, "-c", "import socket,sys; socket.socket(socket.AF_INET, "
                      "socket.SOCK_DGRAM).sendto(sys.argv[1].encode(), (sys.argv[2], 9))",
                      control, lab.addr["host0"]])
    marker = "plaintext-marker-" + "7" * 40
    r = cluster.flux("run", "-N3", "sh", "-c", f"echo {marker}")
    assert r.stdout.split() == [marker] * 3
    sniffer.terminate()
    sniffer.wait(timeout=30)
    data = cap.read_bytes()
    assert control.encode() in data
    assert len(data) > 2000  # overlay packets went over the link...
    assert marker.encode() not in data  # ...and none carried the text in clear
    assert b"shell" not in data and b"job-exec" not in data  # nor any topic string


SNIFF = r"""
import signal, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.5)
out = open(sys.argv[2], "wb")
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("capturing", flush=True)
while not stop:
    try:
        out.write(s.recv(65536))
    except (TimeoutError, InterruptedError):
        pass
out.close()
"""


def test_a_host_without_the_key_cannot_join(cluster):
    lab = cluster.lab
    tmp = cluster.tmp
    # the intruder holds another certificate and claims to be host2 (-Shostname)
    other = keygen(tmp / "other.cert")
    conf = write_conf(tmp / "intruder.toml", other, "host[0-2]")
    start = time.monotonic()
    r = lab.run("intruder", [FLUX, "start", f"--conf={conf}", "-Shostname=host2"])
    assert r.returncode == 1
    assert "parent rank 0 refused this broker" in r.stderr
    assert time.monotonic() - start < 30
    wait_log(cluster.env, "broker.err[0]: overlay: dropped a peer that failed the handshake")
    # without any certificate it cannot even start
    bare = tmp / "bare.toml"
    bare.write_text(f'[bootstrap]\ndefault_port = {PORT}\ndefault_connect = "tcp://%h:%p"\n'
                    'hosts = [ { host = "host[0-2]" } ]\n')
    r = lab.run("intruder", [FLUX, "start", f"--conf={bare}", "-Shostname=host2"])
    assert r.returncode == 1 and "curve_cert is required" in r.stderr
    # a hand-made client that knows the server's public key but not the secret one
    server_public = curve.load(cluster.cert).public
    r = lab.run("intruder", [sys.executable, "-c", RAW_PEER, f"tcp://host0:{PORT}",
                             server_public.decode()])
    assert r.stdout.strip() == str(int(zmq.EVENT_HANDSHAKE_FAILED_AUTH)), r.stderr
    wait_log(cluster.env, f"overlay: refused connection from {lab.addr['intruder']}: "
                          "its CURVE key is not the instance's certificate")
    # the instance carries on with its three hosts
    status = cluster.flux("overlay", "status").stdout.splitlines()
    assert status == ["0 host0: full", "├─ 1 host1: full", "└─ 2 host2: full"]
    r = cluster.flux("run", "-N3", "hostname")
    assert sorted(r.stdout.split()) == ["host0", "host1", "host2"], r.stderr


RAW_PEER = r"""
import sys, zmq
from zmq.utils.monitor import parse_monitor_message
ctx = zmq.Context()
d = ctx.socket(zmq.DEALER)
d.identity = b"2"
d.curve_publickey, d.curve_secretkey = zmq.curve_keypair()
d.curve_serverkey = sys.argv[2].encode()
m = d.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED
                         | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
d.connect(sys.argv[1])
print(int(parse_monitor_message(m.recv_multipart())["event"]))
d.close(0)
ctx.destroy(0)
"""
