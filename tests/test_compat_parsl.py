"""Parsl runs unmodified with its FluxExecutor (parsl/executors/flux/): the executor
starts its own instance with `flux start python flux_instance_manager.py ...` (which
sends back flux.__file__'s package path and attr_get("local-uri"), then drains the
queue with job-manager.drain), connects flux.job.FluxExecutor(handle_args=(uri,)) to
it and runs each app as a job built by JobspecV1.from_command (cwd, environment,
stdout/stderr files); an app's result comes back through the job's exit code and a
pickle file.

The test runs Parsl's own Flux tests, as shipped in the parsl package
(parsl/tests/test_flux.py: results, exceptions, cores_per_task affinity, cancel),
with our `flux` first on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

parsl = pytest.importorskip("parsl", reason="parsl is not installed (pip install parsl)")
pytest.importorskip("parsl.executors.flux.executor")


@pytest.mark.slow
def test_parsl_own_flux_tests(tmp_path):
    from conftest import BIN

    shipped = os.path.join(os.path.dirname(parsl.__file__), "tests", "test_flux.py")
    # a copy outside parsl's tests package: its conftest.py needs Parsl's pytest setup
    shutil.copy(shipped, tmp_path / "test_flux.py")
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=str(tmp_path))  # the jobs unpickle the test's functions
    env.pop("FLUX_URI", None)  # the executor starts an instance of its own
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-W", "ignore", "-rs", "test_flux.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # every test ran: none skipped for want of flux (only the affinity test may skip,
    # on a machine with a single CPU)
    assert " passed" in summary and "failed" not in summary, r.stdout[-3000:]
    skips = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("too few CPUs" in line for line in skips), skips
