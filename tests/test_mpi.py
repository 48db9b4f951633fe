"""MPI programs bootstrap through the job shell's PMI-1 server.

Uses Debian's MPICH (`mpicc`); the test installs `mpich` and `libmpich-dev` with
apt when mpicc is missing, and skips with the reason when that is not possible.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

HELLO = r"""
#include <mpi.h>
#include <stdio.h>
int main (int argc, char **argv)
{
    int rank, size, sum = 0;
    MPI_Init (&argc, &argv);
    MPI_Comm_rank (MPI_COMM_WORLD, &rank);
    MPI_Comm_size (MPI_COMM_WORLD, &size);
    MPI_Allreduce (&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf ("rank %d of %d sum %d\n", rank, size, sum);
    MPI_Finalize ();
    return 0;
}
"""


def _ensure_mpicc() -> str:
    mpicc = shutil.which("mpicc")
    if mpicc:
        return mpicc
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("mpicc is missing and apt-get cannot install mpich here (not root or no apt)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "mpich", "libmpich-dev"],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "mpich", "libmpich-dev"],
                           capture_output=True, text=True, env=env, timeout=600)
    mpicc = shutil.which("mpicc")
    if r.returncode != 0 or not mpicc:
        pytest.skip(f"apt-get install mpich failed: {r.stderr.strip()[-300:]}")
    return mpicc


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    mpicc = _ensure_mpicc()
    d = tmp_path_factory.mktemp("mpi")
    (d / "hello.c").write_text(HELLO)
    r = subprocess.run([mpicc, "-o", str(d / "hello"), str(d / "hello.c")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return str(d / "hello")


def _check(stdout: str, n: int) -> None:
    got = sorted(re.findall(r"rank (\d+) of (\d+) sum (\d+)", stdout), key=lambda t: int(t[0]))
    want = [(str(r), str(n), str(n * (n - 1) // 2)) for r in range(n)]
    assert got == want, stdout


def test_mpi_hello_n4(make_instance, hello):
    host = os.uname().nodename
    inst = make_instance(1, conf=[f'resource.config=[{{hosts="{host}", cores="0-7"}}]'])
    r = inst.flux("run", "-n4", hello, timeout=120)
    assert r.returncode == 0, r.stderr
    _check(r.stdout, 4)


@pytest.mark.slow
def test_mpi_hello_two_nodes(make_instance, hello):
    """Ranks on two shells: the PMI exchange crosses brokers, MPI uses its network path."""
    inst = make_instance(2, conf=['resource.config=[{hosts="mpi[0-1]", cores="0-7"}]'],
                         extra=["--test-hosts=mpi[0-1]"])
    r = inst.flux("run", "-N2", "-n4", hello, timeout=120)
    assert r.returncode == 0, r.stderr
    _check(r.stdout, 4)
