"""Start a real instance for a benchmark: `with Instance(size, conf=[...]) as inst:`.

The initial program prints FLUX_URI and waits for stdin to close, so the benchmark
knows the instance is up without polling, and stops it by closing stdin.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile

BIN = os.path.dirname(sys.executable)
FLUX = os.path.join(BIN, "flux")


def declared_cores_conf(ncores: int, hosts: str | None = None) -> str:
    """`--conf` value declaring `ncores` cores on this host (more than it has is fine)."""
    h = hosts or socket.gethostname()
    return f'resource.config=[{{hosts="{h}", cores="0-{ncores - 1}"}}]'


class Instance:
    def __init__(self, size: int = 1, conf: list[str] | None = None, setattrs: list[str] | None = None,
                 extra: list[str] | None = None):
        self.rundir = tempfile.mkdtemp(prefix="flux-bench-")
        cmd = [FLUX, "start", f"--test-size={size}", f"--rundir={self.rundir}"]
        cmd += [f"--conf={c}" for c in conf or []]
        cmd += [f"-S{a}" for a in setattrs or []]
        cmd += extra or []
        cmd += ["--", sys.executable, "-c",
                "import os,sys; print(os.environ['FLUX_URI'], flush=True); sys.stdin.read()"]
        self.env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=self.env)
        self.uri = self.proc.stdout.readline().strip()
        if not self.uri:
            self.proc.wait()
            raise RuntimeError("instance failed to start")
        self.env["FLUX_URI"] = self.uri

    def flux(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        r = subprocess.run([FLUX, *args], env=self.env, capture_output=True, text=True, **kw)
        if check and r.returncode:
            raise RuntimeError(f"flux {' '.join(args)}: {r.stderr.strip()}")
        return r

    def broker_rss_mb(self, rank: int = 0) -> float:
        pid = self.flux("getattr", "broker.pid").stdout.strip()
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User+system CPU of rank 0's broker and of its children (shell servers, tasks)
        still running, so far: steadier than wall time on a shared or stolen CPU."""
        pid = self.flux("getattr", "broker.pid").stdout.strip()
        tick = os.sysconf("SC_CLK_TCK")

        def cpu(p: str) -> float:
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                return 0.0
            return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick

        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except OSError:
            kids = []
        return cpu(pid) + sum(cpu(k) for k in kids)

    def close(self) -> None:
        try:  # even when flux start has exited, so the initial program ends too
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
