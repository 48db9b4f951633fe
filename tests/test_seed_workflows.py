"""The seed workflows of docs/tutorial-hierarchy.md, run as written on a modeled
cluster: four brokers named node[0-3], each with 8 cores and 2 GPUs
(`--test-hosts` and `resource.config`). Every `flux batch` here starts a real child
instance (one broker per node, bootstrapped by the job shell's PMI)."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.slow

CLUSTER = ['resource.config=[{hosts="node[0-3]", cores="0-7", gpus="0-1"}]']


@pytest.fixture
def cluster(make_instance):
    return make_instance(4, conf=CLUSTER, extra=["--test-hosts=node[0-3]"])


def sh(cluster, script: str, cwd, timeout: float = 240) -> str:
    """Run a shell script in the instance (as a user at its prompt would)."""
    r = subprocess.run(["sh", "-c", script], cwd=cwd, env=cluster.env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{script}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def write(path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def output_of(cwd, jobid: str) -> str:
    return (cwd / f"flux-{jobid}.out").read_text()


def test_conventional_batch_script(cluster, tmp_path):
    """flux batch -N4 -n4 -c8 --wrap around flux run: one child instance on the
    four nodes, its tasks spread over all of them."""
    jobid = sh(cluster, "flux batch -N4 -n4 -c8 --wrap flux run -N4 -n4 -c8 "
                        "flux getattr size", tmp_path).strip()
    sh(cluster, f"flux job wait-event -t 200 {jobid} clean", tmp_path)
    assert output_of(tmp_path, jobid).split() == ["4"] * 4  # a four-broker child
    r = sh(cluster, f"flux jobs -a -no '{{result}} {{nnodes}} {{ntasks}}' {jobid}", tmp_path)
    assert r.split() == ["COMPLETED", "4", "4"]


HETERO_MAIN = """#!/bin/sh
#FLUX: -N4 -n4 -c8 -g2
#FLUX: --job-name=ensemble
flux batch -N1 -n1 -c8 sub-cpu.sh
flux batch -N2 -n2 -c4 -g1 sub-gpu.sh
flux batch -N1 -n2 -c2 -g1 sub-mixed.sh
flux queue drain
"""
SUB_CPU = """#!/bin/sh
flux run -n8 sh -c 'echo cpu $FLUX_TASK_RANK' | sort -u | wc -l
flux resource list -n -s free
"""
SUB_GPU = """#!/bin/sh
flux run -N2 -n2 -c4 -g1 printenv CUDA_VISIBLE_DEVICES
flux resource list -n -s free
"""
SUB_MIXED = """#!/bin/sh
flux run -n2 -c2 -g1 sh -c 'echo gpu=$CUDA_VISIBLE_DEVICES'
flux resource list -n -s free
"""


def test_heterogeneous_batch_of_batches(cluster, tmp_path):
    """One batch job runs three flux batch sub-scripts with different core and GPU
    counts in its own instance, then waits for them with flux queue drain."""
    for name, text in (("main.sh", HETERO_MAIN), ("sub-cpu.sh", SUB_CPU),
                       ("sub-gpu.sh", SUB_GPU), ("sub-mixed.sh", SUB_MIXED)):
        write(tmp_path / name, text)
    jobid = sh(cluster, "flux batch main.sh", tmp_path).strip()
    sh(cluster, f"flux job wait-event -t 200 {jobid} clean", tmp_path)
    subs = output_of(tmp_path, jobid).split()
    assert len(subs) == 3  # the ids of the three sub-jobs, printed by flux batch
    cpu, gpu, mixed = (output_of(tmp_path, s).splitlines() for s in subs)
    assert cpu[0].strip() == "8"
    free = cpu[1].split()  # 8 cores on one node, no GPU column: the child has none
    assert free[:3] == ["free", "1", "8"] and len(free) == 4 and free[3].startswith("node")
    assert gpu[:2] == ["0", "0"]  # one GPU per node, on two nodes
    assert gpu[2].split()[:4] == ["free", "2", "8", "2"]
    assert mixed[:2] == ["gpu=0,1", "gpu=0,1"]
    assert mixed[2].split()[:4] == ["free", "1", "4", "2"]
    r = sh(cluster, f"flux jobs -a -no '{{name}} {{result}}' {jobid}", tmp_path)
    assert r.split() == ["ensemble", "COMPLETED"]


STEP = """#!/bin/sh
echo "step $1: $(flux resource list -n -s free)"
flux run -n2 -c2 flux getattr jobid-path
"""
LOOP = """#!/bin/sh
for i in 1 2 3 4 5 6; do
    flux batch --nslots=2 -c 2 -N 1 step.sh $i
done
flux queue drain
flux jobs -a -no '{name} {result} {nnodes} {ncores}'
"""


def test_loop_of_batch_jobs_then_drain(cluster, tmp_path):
    write(tmp_path / "step.sh", STEP)
    write(tmp_path / "loop.sh", LOOP)
    out = sh(cluster, "./loop.sh", tmp_path).splitlines()
    ids, listing = out[:6], out[6:]
    assert len(set(ids)) == 6
    assert sorted(listing) == ["step.sh COMPLETED 1 4"] * 6
    for i, jobid in enumerate(ids, 1):
        lines = output_of(tmp_path, jobid).splitlines()
        assert lines[0].startswith(f"step {i}:") and lines[0].split()[2:5] == ["free", "1", "4"]
        assert lines[1:] == [f"/{jobid}"] * 2  # the child's own jobid path
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".out") and
                p[5:-4] not in ids]
