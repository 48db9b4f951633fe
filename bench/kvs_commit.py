"""KVS commit throughput: single-key puts from one client, sequential and pipelined,
through the `flux kvs put` command, and through the in-broker API (`broker.kvs`).

    python bench/kvs_commit.py [-n N] [--cli N]

Without FLUX_URI it starts a one-broker instance (statedir in a temporary directory,
so every commit really goes to SQLite) and runs itself inside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time


def rate(n: int, dt: float) -> str:
    return f"{n / dt:10.0f} commits/s  ({dt * 1e6 / n:7.1f} us each, n={n})"


def bench_client(n: int, cli_n: int) -> None:
    import flux
    import flux.kvs as kvs
    from flux.core.kvs import treeobj as T

    h = flux.Flux()

    def payload(i: int) -> dict:
        return {"namespace": "primary", "flags": 0,
                "ops": [{"key": f"bench.seq.k{i}", "flags": 0, "dirent": T.val(b"%d" % i)}]}

    for i in range(100):  # warm up
        h.rpc("kvs.commit", payload(i)).get()
    t0 = time.perf_counter()
    for i in range(n):
        kvs.put(h, f"bench.seq.k{i}", i)
        kvs.commit(h)
    print(f"sequential (flux.kvs put+commit) {rate(n, time.perf_counter() - t0)}")

    window = 256
    t0 = time.perf_counter()
    inflight = []
    for i in range(n):
        inflight.append(h.rpc("kvs.commit", {
            "namespace": "primary", "flags": 0,
            "ops": [{"key": f"bench.pipe.k{i}", "flags": 0, "dirent": T.val(b"%d" % i)}]}))
        if len(inflight) >= window:
            for f in inflight:
                f.get()
            inflight = []
    for f in inflight:
        f.get()
    print(f"pipelined (window {window})          {rate(n, time.perf_counter() - t0)}")
    st = h.rpc("kvs.stats-get").get()
    print(f"  broker: {st['commits']} commits in {st['flushes']} SQLite transactions")

    if cli_n:
        flux_cmd = shutil.which("flux") or os.path.join(os.path.dirname(sys.executable), "flux")
        t0 = time.perf_counter()
        for i in range(cli_n):
            subprocess.run([flux_cmd, "kvs", "put", f"bench.cli.k{i}={i}"], check=True)
        print(f"CLI (flux kvs put, one process each) {rate(cli_n, time.perf_counter() - t0)}")
    assert kvs.get(h, f"bench.pipe.k{n - 1}") == n - 1


def bench_inproc(n: int) -> None:
    """The in-broker API on a real SQLite file, without messages (what the job manager uses)."""
    from flux.core.broker.attributes import Attributes
    from flux.core.kvs import ops
    from flux.core.kvs.service import KVSService

    class Broker:
        rank, owner = 0, os.getuid()

        def __init__(self, d):
            self.attrs = Attributes()
            self.attrs.set("statedir", d)

        def publish(self, *a, **kw):
            pass

        def log_exception(self, what, exc):
            raise exc

    with tempfile.TemporaryDirectory() as d:
        svc = KVSService(Broker(d))

        async def main():
            t0 = time.perf_counter()
            for i in range(n):
                await svc.commit_ops("primary", [ops.put(f"seq.k{i}", b"%d" % i)])
            print(f"in-broker, sequential awaits      {rate(n, time.perf_counter() - t0)}")
            t0 = time.perf_counter()
            await asyncio.gather(*(svc.commit_ops("primary", [
                ops.append_event(f"job.{i}.eventlog", "submit", {"userid": 0})])
                for i in range(n)))
            print(f"in-broker, {n} concurrent        {rate(n, time.perf_counter() - t0)}")

        asyncio.run(main())
        svc.store.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=5000, help="commits per client benchmark")
    p.add_argument("--cli", type=int, default=50, help="commits through the CLI (0: skip)")
    args = p.parse_args()
    if not os.environ.get("FLUX_URI"):
        statedir = tempfile.mkdtemp(prefix="kvs-bench-")
        try:
            flux_cmd = os.path.join(os.path.dirname(sys.executable), "flux")
            return subprocess.call([flux_cmd, "start", f"-Sstatedir={statedir}", "--",
                                    sys.executable, __file__, "-n", str(args.n),
                                    "--cli", str(args.cli)])
        finally:
            shutil.rmtree(statedir, ignore_errors=True)
    bench_client(args.n, args.cli)
    bench_inproc(args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
