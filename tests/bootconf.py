"""Start an instance from a `[bootstrap]` config: one `flux start --conf=FILE` per host.

Used by test_bootstrap_config.py (every "host" on this machine, told apart by
FLUX_FAKE_HOSTNAME) and test_multihost.py (one network namespace per host).
Rank 0's initial program prints FLUX_URI and waits on stdin, so reading that line
means the whole tree has joined; closing stdin shuts the instance down.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable

BIN = os.path.dirname(sys.executable)
FLUX = os.path.join(BIN, "flux")
WAIT_PROGRAM = [sys.executable, "-c",
                "import os,sys; print(os.environ['FLUX_URI'], flush=True); sys.stdin.read()"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def toml_hosts(entries: list[dict]) -> str:
    items = []
    for e in entries:
        items.append("{ " + ", ".join(f'{k} = "{v}"' for k, v in e.items()) + " }")
    return "hosts = [\n  " + ",\n  ".join(items) + ",\n]\n"


def base_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    for k in ("FLUX_URI", "FLUX_FAKE_HOSTNAME"):
        env.pop(k, None)
    return env


class ConfInstance:
    """Brokers of one instance; `launch(host, cmd)` wraps a broker's command line
    (e.g. to run it in that host's network namespace)."""

    def __init__(self, conf: str, hosts: list[str],
                 launch: Callable[[str, list[str]], list[str]] | None = None,
                 fake_hostname: bool = True, timeout: float = 60):
        self.env = base_env()
        self.procs: list[subprocess.Popen] = []
        self.hosts = hosts
        self.stderr: list[str] = []
        launch = launch or (lambda host, cmd: cmd)
        for rank in reversed(range(len(hosts))):  # leaves first: they wait for their parents
            cmd = [FLUX, "start", f"--conf={conf}"] + (["--", *WAIT_PROGRAM] if rank == 0 else [])
            env = dict(self.env)
            if fake_hostname:
                env["FLUX_FAKE_HOSTNAME"] = hosts[rank]
            p = subprocess.Popen(launch(hosts[rank], cmd), env=env, text=True,
                                 stdin=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            self.procs.insert(0, p)
        line = self.procs[0].stdout.readline().strip()
        if not line:
            self.kill()
            errs = [p.stderr.read().strip() for p in self.procs]
            raise RuntimeError("instance failed to start: " + " | ".join(e for e in errs if e))
        self.uri = line
        self.env["FLUX_URI"] = line

    def flux(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([FLUX, *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout)

    def stop(self, timeout: float = 60) -> list[int]:
        leader = self.procs[0]
        if leader.poll() is None:
            try:
                leader.stdin.close()
            except BrokenPipeError:
                pass
        rcs = []
        for p in self.procs:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            rcs.append(p.returncode)
        self.stderr = [p.stderr.read() for p in self.procs]
        return rcs

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def wait_log(env: dict, text: str, timeout: float = 30) -> str:
    """Follow the instance's log (`flux dmesg -f`) until a line contains `text`."""
    import queue
    import threading

    p = subprocess.Popen([FLUX, "dmesg", "-f"], stdout=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in p.stdout] + [lines.put("")],
                     daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                line = ""
            if not line:
                raise AssertionError(f"no log line with {text!r} within {timeout}s")
            if text in line:
                return line
    finally:
        p.kill()
        p.wait()
