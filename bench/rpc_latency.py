"""RPC round-trip latency and message rate through the local connector.

    python bench/rpc_latency.py [-n N] [--window W] [--size S] [--topo kary:K] [--pad BYTES]
                                [--curve]

Starts an instance of S brokers (default 7 with kary:2: a 3-level tree) and, from
one client on rank 0's local socket, sends `broker.ping` to

  - rank 0 itself (client -> connector -> router -> service and back), and
  - the deepest rank (for 7/kary:2, rank 6: 0 -> 2 -> 6 over the overlay and back),

first sequentially (one request in flight: median / p90 / p99 round trip) and then
pipelined (W requests in flight: messages per second). A "message" is one request
plus its response. With --curve, the overlay links are CURVE-encrypted (a fresh
certificate, `[bootstrap] curve_cert`), as in a multi-host instance.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from instance import Instance  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def sequential(h, nodeid: int, n: int, pad: str) -> dict:
    payload = {"pad": pad}
    for _ in range(min(200, n)):  # warm up
        h.rpc("broker.ping", payload, nodeid=nodeid).get()
    rtts = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        h.rpc("broker.ping", payload, nodeid=nodeid).get()
        rtts.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {"median_us": statistics.median(rtts) * 1e6, "p90_us": pct(rtts, 0.9) * 1e6,
            "p99_us": pct(rtts, 0.99) * 1e6, "msgs_per_s": n / total}


def pipelined(h, nodeid: int, n: int, window: int, pad: str) -> dict:
    payload = {"pad": pad}
    inflight = []
    sent = done = 0
    t0 = time.perf_counter()
    while done < n:
        while sent < n and len(inflight) < window:
            inflight.append(h.rpc("broker.ping", payload, nodeid=nodeid))
            sent += 1
        inflight.pop(0).get()
        done += 1
    total = time.perf_counter() - t0
    return {"msgs_per_s": n / total, "total_s": total}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=5000, help="round trips per measurement")
    p.add_argument("--window", type=int, default=256, help="requests in flight when pipelined")
    p.add_argument("--size", type=int, default=7, help="brokers in the instance")
    p.add_argument("--topo", default="kary:2", help="tbon.topo")
    p.add_argument("--pad", type=int, default=0, help="bytes of padding in each request")
    p.add_argument("--curve", action="store_true", help="encrypt the overlay with CURVE")
    args = p.parse_args()

    import flux
    from flux.core.broker.topology import Topology

    deepest = args.size - 1
    level = Topology.parse(args.topo, args.size).level(deepest)
    pad = "x" * args.pad
    conf = []
    if args.curve:
        import tempfile

        from flux.core.security import curve

        certdir = tempfile.mkdtemp(prefix="flux-bench-cert-")
        cert = os.path.join(certdir, "curve.cert")
        curve.save(curve.generate("bench"), cert)
        conf.append(f"bootstrap.curve_cert={cert}")
    print(f"# broker.ping, {args.n} round trips each, pad={args.pad} bytes; "
          f"instance of {args.size} brokers ({args.topo}); overlay "
          f"{'CURVE' if args.curve else 'unencrypted'}; python {sys.version.split()[0]}")
    with Instance(args.size, setattrs=[f"tbon.topo={args.topo}"], conf=conf) as inst:
        h = flux.Flux(inst.uri)
        rows = []
        for label, nodeid in (("rank 0 (local)", 0), (f"rank {deepest} (level {level})", deepest)):
            s = sequential(h, nodeid, args.n, pad)
            q = pipelined(h, nodeid, args.n, args.window, pad)
            rows.append((label, s, q))
        print(f"{'target':<20} {'median':>10} {'p90':>10} {'p99':>10} {'seq msg/s':>10} "
              f"{'pipelined msg/s':>16}")
        for label, s, q in rows:
            print(f"{label:<20} {s['median_us']:>8.0f}us {s['p90_us']:>8.0f}us {s['p99_us']:>8.0f}us "
                  f"{s['msgs_per_s']:>10.0f} {q['msgs_per_s']:>16.0f}")
        h.close()
    if args.curve:
        import shutil

        shutil.rmtree(certdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
