"""`flux ping [-c COUNT] [-i INTERVAL] [-p PAD] TARGET`: round trips to a broker service."""

from __future__ import annotations

import time

from flux.cmd.util import Parser, cli, open_handle
from flux.constants import FLUX_NODEID_ANY
from flux.core.util.fsd import parse_fsd


def parse_target(target: str) -> tuple[int, str]:
    """'1', '1!kvs', 'kvs', 'any' -> (nodeid, service)."""
    rank_s, sep, svc = target.partition("!")
    if not sep:
        if target.isdigit():
            return int(target), "broker"
        if target == "any":
            return FLUX_NODEID_ANY, "broker"
        return FLUX_NODEID_ANY, target
    if rank_s == "any":
        return FLUX_NODEID_ANY, svc
    if not rank_s.isdigit():
        raise ValueError(f"invalid ping target '{target}'")
    return int(rank_s), svc


@cli("flux-ping")
def main(argv: list[str]) -> int:
    p = Parser("flux ping")
    p.add_argument("-c", "--count", type=int, default=0, help="number of pings (0: forever)")
    p.add_argument("-i", "--interval", default="1s", help="delay between pings (FSD)")
    p.add_argument("-p", "--pad", type=int, default=0, help="bytes of padding")
    p.add_argument("-b", "--batch", action="store_true", help="send all at once")
    p.add_argument("target")
    args = p.parse_args(argv)
    nodeid, svc = parse_target(args.target)
    interval = parse_fsd(args.interval)
    h = open_handle("flux-ping")
    pad = "x" * args.pad
    seq = 0
    total = 0.0
    if args.batch:
        # every request in flight at once, then the answers in order
        if args.count <= 0:
            raise ValueError("--batch needs --count")
        t0 = time.perf_counter()
        futs = [h.rpc(f"{svc}.ping", {"seq": i, "pad": pad}, nodeid=nodeid) for i in range(args.count)]
        for i, f in enumerate(futs):
            resp = f.get()
            dt = (time.perf_counter() - t0) * 1000
            print(f"{resp.get('rank', nodeid)}!{svc}.ping pad={args.pad} seq={i} time={dt:.3f} ms "
                  f"({resp.get('route', '')})", flush=True)
        return 0
    while args.count == 0 or seq < args.count:
        t0 = time.perf_counter()
        resp = h.rpc(f"{svc}.ping", {"seq": seq, "pad": pad}, nodeid=nodeid).get()
        dt = (time.perf_counter() - t0) * 1000
        total += dt
        where = resp.get("rank", nodeid)
        print(f"{where}!{svc}.ping pad={args.pad} seq={seq} time={dt:.3f} ms ({resp.get('route', '')})",
              flush=True)
        seq += 1
        if args.count == 0 or seq < args.count:
            time.sleep(interval)
    return 0
