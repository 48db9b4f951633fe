"""Job throughput, latency and memory (issue: jobs end to end), side by side with Slurm.

Workload (as the issue states it): one instance with 32 declared cores, N jobs of
`true` submitted with `--cc`, timed from the first submit until the queue is empty.

    python bench/jobs_throughput.py [--jobs 2000] [--slurm] [--quick]

--slurm runs the same workload through Slurm (`sbatch --wrap true`, one by one) when
`sbatch` is installed (../shared/slurm/setup-slurm.sh brings one up, as root), and
prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from instance import Instance, declared_cores_conf  # noqa: E402

TEST_EXEC = "--setattr=system.exec.test.run_duration=0.001s"


def drain_rate(inst: Instance, njobs: int, test_exec: bool) -> tuple[float, float]:
    """(jobs/s, instance CPU ms per job: broker and shell servers)."""
    args = ["submit", "--quiet", f"--cc=1-{njobs}"]
    if test_exec:
        args.append(TEST_EXEC)
    c0 = inst.cpu_seconds()
    t0 = time.perf_counter()
    inst.flux(*args, "true")
    inst.flux("queue", "drain")
    rate = njobs / (time.perf_counter() - t0)
    return rate, (inst.cpu_seconds() - c0) * 1000 / njobs


def run_latency(inst: Instance, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        inst.flux("run", "true")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def submit_rate(inst: Instance, njobs: int) -> float:
    t0 = time.perf_counter()
    inst.flux("submit", "--quiet", "--urgency=hold", f"--cc=1-{njobs}", "true")
    rate = njobs / (time.perf_counter() - t0)
    inst.flux("cancel", "--all", check=False)
    inst.flux("queue", "drain")
    return rate


def memory(njobs: int, purge_limit: int | None) -> tuple[float, float]:
    conf = [declared_cores_conf(32)]
    if purge_limit is not None:
        conf.append(f"job-manager.inactive-num-limit={purge_limit}")
    with Instance(conf=conf) as inst:
        before = inst.broker_rss_mb()
        batch = 10000
        done = 0
        while done < njobs:
            n = min(batch, njobs - done)
            inst.flux("submit", "--quiet", f"--cc=1-{n}", TEST_EXEC, "true")
            inst.flux("queue", "drain")
            done += n
        return before, inst.broker_rss_mb()


def slurm_rate(njobs: int) -> float | None:
    if not shutil.which("sbatch"):
        return None
    t0 = time.perf_counter()
    for _ in range(njobs):
        subprocess.run(["sbatch", "--quiet", "--wrap", "true", "-o", "/dev/null"], check=True)
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        time.sleep(0.05)  # Slurm offers no event to wait on from a shell; poll its queue
    return njobs / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--slurm", action="store_true", help="also run the workload through Slurm")
    p.add_argument("--quick", action="store_true", help="smaller runs, skip the 100k memory test")
    p.add_argument("--only", choices=["speed", "memory"],
                   help="run only the throughput/latency part or only the memory part")
    args = p.parse_args()
    n = args.jobs if not args.quick else min(args.jobs, 500)
    results = {}
    if args.only != "memory":
        with Instance(conf=[declared_cores_conf(32)]) as inst:
            rate, cpu = drain_rate(inst, n, test_exec=False)
            results["real exec jobs/s"] = rate
            results["real exec instance CPU ms/job"] = cpu
            rate, cpu = drain_rate(inst, n, test_exec=True)
            results["test exec jobs/s"] = rate
            results["test exec instance CPU ms/job"] = cpu
            results["flux run true median s"] = run_latency(inst, 20)
            results["submit jobs/s (10k)"] = submit_rate(inst, 10000 if not args.quick else 2000)
    if args.only != "speed":
        before, after = memory(10000 if not args.quick else 2000, None)
        results["broker RSS MB before"] = before
        results["broker RSS MB after 10k jobs"] = after
        if not args.quick:
            _b, after_100k = memory(100000, 10000)
            results["broker RSS MB after 100k jobs (purge at 10k)"] = after_100k
    for k, v in results.items():
        print(f"{k:<48} {v:10.3f}")
    if args.slurm:
        s = slurm_rate(min(n, 1000))
        if s is None:
            print("slurm: sbatch not installed (run ../shared/slurm/setup-slurm.sh as root)")
        else:
            print(f"{'slurm jobs/s (sbatch --wrap true)':<48} {s:10.3f}")
            print(f"{'ratio real exec / slurm':<48} {results['real exec jobs/s'] / s:10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
