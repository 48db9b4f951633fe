"""Fixtures that start real instances.

An instance runs `flux start` with an initial program that prints FLUX_URI and then
waits for stdin to close: reading that line tells us every broker is up (rc2 runs
only after the whole tree has joined), and closing stdin shuts the instance down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

BIN = os.path.dirname(sys.executable)
FLUX = os.path.join(BIN, "flux")


class Instance:
    def __init__(self, size: int = 1, setattrs: list[str] | None = None, conf: list[str] | None = None,
                 extra: list[str] | None = None, env: dict | None = None):
        self.rundir = tempfile.mkdtemp(prefix="flux-test-")
        cmd = [FLUX, "start", f"--test-size={size}", f"--rundir={self.rundir}"]
        cmd += [f"-S{a}" for a in (setattrs or [])]
        cmd += [f"--conf={c}" for c in (conf or [])]
        cmd += extra or []
        cmd += ["--", sys.executable, "-c",
                "import os,sys; print(os.environ['FLUX_URI'], flush=True); sys.stdin.read()"]
        self.env = dict(os.environ, **(env or {}))
        self.env["PATH"] = BIN + os.pathsep + self.env.get("PATH", "")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env, text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            err = self.proc.stderr.read()
            self.proc.wait()
            raise RuntimeError(f"instance failed to start: {err}")
        self.uri = line
        self.size = size
        self.env["FLUX_URI"] = self.uri

    def handle(self):
        import flux

        return flux.Flux(self.uri)

    def flux(self, *args: str, input: str | None = None, timeout: float = 60, check: bool = False,
             env: dict | None = None) -> subprocess.CompletedProcess:
        """Run `flux ARGS...` against this instance."""
        e = dict(self.env, **(env or {}))
        r = subprocess.run([FLUX, *args], input=input, capture_output=True, text=True,
                           env=e, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"flux {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def stop(self, timeout: float = 60) -> int:
        # close stdin even when flux start has already exited: a broker killed by a test
        # leaves its initial program behind, reading stdin and holding stderr open
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr = self.proc.stderr.read()
        shutil.rmtree(self.rundir, ignore_errors=True)
        return self.proc.returncode


@pytest.fixture
def make_instance():
    made: list[Instance] = []

    def make(size: int = 1, **kw) -> Instance:
        inst = Instance(size, **kw)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        inst.stop()


@pytest.fixture
def instance(make_instance) -> Instance:
    """A one-broker instance."""
    return make_instance(1)


@pytest.fixture(scope="module")
def shared_instance():
    """A 3-broker instance shared by a module's tests (for read-mostly tests)."""
    inst = Instance(3)
    yield inst
    inst.stop()


@pytest.fixture(autouse=True)
def _restore_environ():
    """Undo what a test or a library it drives left in os.environ (executorlib sets
    PYTHONPATH to a test's tmp dir, which an instance run by another user cannot read)."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
