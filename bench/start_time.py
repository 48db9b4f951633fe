"""How long `flux start true` takes (the issue's target: at most 0.7 s; flux-core
0.88 takes about 1.0 s here), and a two-broker instance bootstrapped through our
job shell's PMI (`flux run -n2 flux start true` inside an instance).

    .venv/bin/python bench/start_time.py [-n RUNS]

Prints the best and median wall time and the CPU time (user+sys of the command and
its children, what the machine's load cannot inflate).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from instance import FLUX, Instance, declared_cores_conf  # noqa: E402


def measure(cmd: list[str], runs: int, env: dict | None = None) -> tuple[list[float], float]:
    walls, cpu = [], 0.0
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return walls, cpu / runs


def report(what: str, walls: list[float], cpu: float | None) -> None:
    line = f"{what:<44} best {min(walls):.3f} s  median {statistics.median(walls):.3f} s"
    if cpu is not None:
        line += f"  cpu {cpu:.3f} s"
    print(line)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--runs", type=int, default=10)
    args = p.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    walls, cpu = measure([FLUX, "start", "true"], args.runs)
    report("flux start true", walls, cpu)
    walls, cpu = measure([FLUX, "start", "--test-size=2", "true"], args.runs)
    report("flux start --test-size=2 true", walls, cpu)
    with Instance(1, conf=[declared_cores_conf(8)]) as inst:
        env = dict(inst.env, FLUX_URI=inst.uri)
        subprocess.run([FLUX, "run", "true"], env=env, check=True)  # warm the shell server
        walls, _ = measure([FLUX, "run", "-n2", "flux", "start", "true"], args.runs, env)
        report("flux run -n2 flux start true (PMI, 2 brokers)", walls, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
