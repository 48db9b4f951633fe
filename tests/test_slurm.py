"""Our instance inside a real Slurm (one node, brought up by shared/slurm/setup-slurm.sh).

`srun --mpi=pmi2` gives each task PMI_FD/PMI_RANK/PMI_SIZE: the brokers bootstrap
through Slurm's PMI-1 server into one instance. The batch step of `sbatch` has no
PMI: `flux start` there is a singleton. Jobs are waited for with Slurm's own
tools (`srun` blocks, `sbatch --wait`). Needs root; skipped with the reason when
Slurm cannot be set up. If this module started Slurm, it stops it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)


def _slurm_dir() -> str | None:
    for d in (os.path.join(HERE, "..", "..", "shared", "slurm"), "/work/shared/slurm"):
        if os.path.isfile(os.path.join(d, "setup-slurm.sh")):
            return os.path.abspath(d)
    return None


def _running() -> bool:
    if not shutil.which("srun"):
        return False
    try:
        r = subprocess.run(["srun", "-n1", "-t1", "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("setting up Slurm needs root")
    d = _slurm_dir()
    if d is None:
        pytest.skip("shared/slurm/setup-slurm.sh not found")
    was_up = _running()
    if not was_up:
        r = subprocess.run(["bash", os.path.join(d, "setup-slurm.sh"), "-q"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not _running():
            pytest.skip(f"Slurm could not be set up: {(r.stderr or r.stdout).strip()[-400:]}")
    yield
    if not was_up:
        subprocess.run(["bash", os.path.join(d, "teardown-slurm.sh"), "-q"],
                       capture_output=True, timeout=120)


@pytest.fixture
def env():
    """Our venv's `flux` first in PATH inside Slurm's jobs (they inherit it)."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("FLUX_", "PMI_", "SLURM_"))}
    e["PATH"] = BIN + os.pathsep + e.get("PATH", "")
    return e


def test_srun_pmi2_two_brokers(slurm, env, tmp_path):
    r = subprocess.run(["srun", "--mpi=pmi2", "-n2", "flux", "start", "flux", "run", "-n2",
                        "hostname"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [os.uname().nodename] * 2


def test_srun_pmi2_instance_shape(slurm, env, tmp_path):
    script = tmp_path / "shape.sh"
    script.write_text("#!/bin/sh\nflux getattr size\nflux getattr broker.boot-method\n"
                      "flux exec -r 1 flux getattr rank\n"
                      "env | grep -c '^PMI_' || true\n")
    script.chmod(0o755)
    r = subprocess.run(["srun", "--mpi=pmi2", "-n2", "flux", "start", str(script)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    # two brokers, bootstrapped by PMI-1, rank 1 reachable; no PMI_* leaks to the program
    assert r.stdout.split() == ["2", "simple", "1", "0"]


def test_flux_pmi_probes_slurm(slurm, env, tmp_path):
    r = subprocess.run(["srun", "--mpi=pmi2", "-n3", "flux", "pmi", "exchange", "--count=2"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "exchange: 2 x 3 ranks" in r.stdout
    r = subprocess.run(["srun", "--mpi=pmi2", "-n2", "flux", "pmi", "get", "--ranks=all",
                        "PMI_process_mapping"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(vector,(0,1,2))"] * 2


def test_srun_without_pmi_is_a_singleton(slurm, env, tmp_path):
    r = subprocess.run(["srun", "-n1", "flux", "start", "flux", "getattr", "size"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_sbatch_wrap_flux_start(slurm, env, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nflux getattr size\nflux run -n1 echo hello-from-job\n")
    script.chmod(0o755)
    out = tmp_path / "out.txt"
    r = subprocess.run(["sbatch", "--wait", "-o", str(out), "--wrap", "flux start ./script.sh"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, (r.stderr, out.read_text() if out.exists() else "")
    assert out.read_text().split() == ["1", "hello-from-job"]


def test_sbatch_srun_pmi2_inside_allocation(slurm, env, tmp_path):
    out = tmp_path / "out.txt"
    r = subprocess.run(["sbatch", "--wait", "-n2", "-o", str(out), "--wrap",
                        "srun --mpi=pmi2 flux start flux getattr size"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, (r.stderr, out.read_text() if out.exists() else "")
    assert out.read_text().split() == ["2"]
