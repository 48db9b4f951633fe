"""`flux sched match`: standalone matching against a graph file (no instance)."""

from __future__ import annotations

import json
import subprocess

CLUSTER = """
[cluster]
rack-size = 2
[[nodes]]
hosts = "n[0-3]"
sockets = 2
cores-per-socket = 4
gpus-per-socket = 1
"""


def flux(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["flux", "sched", "match", *args], capture_output=True, text=True,
                          input=input, timeout=120)


def test_allocate_prints_R(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(CLUSTER)
    p = flux("-L", str(f), "allocate", "-N2", "-n4", "-c2", "-t", "10")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("jobid=1 (options): ALLOCATED at=0 nodes=2 cores=8")
    R = json.loads(lines[1])
    assert R["execution"]["nodelist"] == ["n[0-1]"] and R["execution"]["expiration"] == 600.0
    assert "scheduling" not in R


def test_jobspec_files_accumulate_and_policy(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(CLUSTER)
    js = {"version": 1, "resources": [{"type": "node", "count": 1, "exclusive": True, "with": [
        {"type": "slot", "count": 1, "label": "task", "with": [{"type": "core", "count": 1}]}]}],
          "tasks": [{"command": ["x"], "slot": "task", "count": {"per_slot": 1}}],
          "attributes": {"system": {"duration": 100}}}
    jf = tmp_path / "job.json"
    jf.write_text(json.dumps(js))
    p = flux("-L", str(f), "-P", "high", "-F", "rlist", "allocate", str(jf), str(jf))
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[1] == "rank3/core[0-7],gpu[0-1]" and out[3] == "rank2/core[0-7],gpu[0-1]"


def test_reserve_and_unsatisfiable(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(CLUSTER)
    script = tmp_path / "s.txt"
    script.write_text("allocate -N4 -t 1h   # all four nodes\n"
                      "reserve -N2 -t 10\n"
                      "satisfiability -N5\n"
                      "cancel 1\n"
                      "allocate -N4\n")
    p = flux("-L", str(f), "-F", "none", "script", str(script))
    out = p.stdout.splitlines()
    assert out[0].startswith("jobid=1 (options): ALLOCATED")
    assert out[1].startswith("jobid=2 (options): RESERVED at=3600")
    assert out[2].startswith("(options): UNSATISFIABLE: requested 5 nodes")
    assert out[3] == "jobid=1: CANCELED"
    # the reservation of job 2 still holds two nodes from t=3600: -N4 unlimited cannot start
    assert out[4].startswith("jobid=3 (options): BUSY")
    assert p.returncode == 1


def test_info_and_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(CLUSTER)
    p = flux("-L", str(f), "info")
    assert p.returncode == 0 and "core" in p.stdout and " 32 " in p.stdout
    p = flux("-L", str(f), "-P", "frist", "info")
    assert p.returncode == 1 and "frist" in p.stderr and "locality" in p.stderr
    p = flux("-L", str(tmp_path / "nope.toml"), "info")
    assert p.returncode == 1 and "cannot read" in p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[[nodes]]\nhost = 'x'\n")
    p = flux("-L", str(bad), "info")
    assert p.returncode == 1 and "unknown key 'host'" in p.stderr
    p = flux("-L", str(f), "allocate")
    assert p.returncode == 1 and "jobspec" in p.stderr


def test_this_machine():
    import os

    p = flux("-f", "hwloc", "-F", "rlist", "allocate", "-n1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[1] == f"rank0/core{min(os.sched_getaffinity(0))}"
