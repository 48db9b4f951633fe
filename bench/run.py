"""Run every benchmark in bench/ one after the other (what `make bench` does).

    python bench/run.py [--quick] [--only NAME[,NAME...]]

Each benchmark is its own script (see bench/README.md); this runner only starts them
in turn with the same interpreter, prints a banner before each, and reports which
ones failed. `--quick` passes each script its short form where it has one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (script, arguments, arguments with --quick)
BENCHES = {
    "rpc_latency": ("rpc_latency.py", [], ["-n", "1000"]),
    "kvs_commit": ("kvs_commit.py", [], ["-n", "1000", "--cli", "10"]),
    "start_time": ("start_time.py", [], ["-n", "3"]),
    "jobs_throughput": ("jobs_throughput.py", ["--slurm"], ["--quick"]),
    "ingest_cost": ("ingest_cost.py", [], ["-n", "2000"]),
    "match_rate": ("match_rate.py", [], ["--jobs", "2000", "--unpruned-jobs", "100"]),
    "sched_trace": ("sched_trace.py", [], ["--jobs", "1000"]),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter runs of each benchmark")
    p.add_argument("--only", default="", help="comma-separated benchmark names: " + ", ".join(BENCHES))
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHES)})")
    failed = []
    for name in names:
        script, full, quick = BENCHES[name]
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            print(f"== {name}: {script} is missing", flush=True)
            failed.append(name)
            continue
        cmd = [sys.executable, path, *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        print(f"== {name}: exit {rc} after {time.perf_counter() - t0:.1f} s\n", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
