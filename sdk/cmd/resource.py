"""`flux resource list|info|R|status|drain|undrain`: the instance's resources (SPEC 10.4)."""

from __future__ import annotations

import json
import time

from flux.cmd.util import Parser, cli, open_handle
from flux.core.resource.rv1 import ResourceSet


def _sched_status(h) -> dict[str, ResourceSet]:
    """all/down/allocated/free from the scheduler (or the resource service if none)."""
    try:
        st = h.rpc("sched.resource-status").get()
        out = {k: ResourceSet.from_dict(st[k]) for k in ("all", "down", "allocated")}
    except OSError:
        st = h.rpc("resource.status").get()
        out = {"all": ResourceSet.from_dict(st["R"]), "down": ResourceSet.from_dict(st["down"]),
               "allocated": ResourceSet()}
    up = out["all"].subtract(out["down"])
    up.ranks = {r: rk for r, rk in up.ranks.items() if r not in out["down"].ranks}
    out["up"] = up
    out["free"] = up.subtract(out["allocated"])
    return out


def _row(state: str, R: ResourceSet, nodes_mode: str) -> tuple:
    if nodes_mode == "allocated":
        ranks = [r for r, rk in R.ranks.items() if rk.cores or rk.gpus]
    elif nodes_mode == "free":
        ranks = [r for r, rk in R.ranks.items() if rk.cores or rk.gpus]
    else:
        ranks = list(R.ranks)
    sub = R.select_ranks(ranks)
    return (state, str(len(ranks)), str(sub.ncores), str(sub.ngpus), sub.hostlist() if ranks else "")


@cli("flux-resource")
def main(argv: list[str]) -> int:
    p = Parser("flux resource")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="resources by state")
    ls.add_argument("-s", "--states", default="free,allocated,down")
    ls.add_argument("-n", "--no-header", action="store_true")
    sub.add_parser("info", help="one-line summary")
    r = sub.add_parser("R", help="print resources as RFC 20 R")
    r.add_argument("-s", "--states", default="all")
    st = sub.add_parser("status", help="node states")
    st.add_argument("-n", "--no-header", action="store_true")
    dr = sub.add_parser("drain", help="take nodes out of scheduling")
    dr.add_argument("targets", nargs="?")
    dr.add_argument("reason", nargs="*")
    ud = sub.add_parser("undrain", help="return drained nodes")
    ud.add_argument("targets")
    args = p.parse_args(argv)
    h = open_handle("flux-resource")
    if args.cmd == "drain":
        if not args.targets:
            st = h.rpc("resource.status").get()
            R = ResourceSet.from_dict(st["R"])
            print(f"{'TIME':<20} {'STATE':<8} {'REASON':<20} NODELIST")
            for r, reason in sorted(st["drained"].items(), key=lambda kv: int(kv[0])):
                print(f"{time.strftime('%Y-%m-%dT%H:%M:%S'):<20} {'drained':<8} {reason:<20} "
                      f"{R.ranks[int(r)].host}")
            return 0
        h.rpc("resource.drain", {"targets": args.targets, "reason": " ".join(args.reason)}).get()
        return 0
    if args.cmd == "undrain":
        h.rpc("resource.undrain", {"targets": args.targets}).get()
        return 0
    s = _sched_status(h)
    if args.cmd == "info":
        up = s["up"]
        print(f"{up.nnodes} Nodes, {up.ncores} Cores, {up.ngpus} GPUs")
        return 0
    if args.cmd == "R":
        states = args.states.split(",")
        R = ResourceSet()
        for st_name in states:
            if st_name not in s:
                raise ValueError(f"unknown state '{st_name}' (use all, up, down, free, allocated)")
            R = R.union(s[st_name])
        print(json.dumps(R.to_dict()))
        return 0
    if args.cmd == "status":
        st = h.rpc("resource.status").get()
        R = ResourceSet.from_dict(st["R"])
        drained = {int(k) for k in st["drained"]}
        rows = [("STATE", "UP", "NNODES", "NODELIST")]
        avail = [r for r in R.ranks if r not in drained]
        for name, ranks in (("avail", avail), ("drained", sorted(drained))):
            if ranks:
                sub_r = R.select_ranks(ranks)
                rows.append((name, "✔", str(len(ranks)), sub_r.hostlist()))
        for row in rows[1 if args.no_header else 0:]:
            print(f"{row[0]:>10} {row[1]:>2} {row[2]:>6} {row[3]}")
        return 0
    states = args.states.split(",")
    rows = [] if args.no_header else [("STATE", "NNODES", "NCORES", "NGPUS", "NODELIST")]
    for st_name in states:
        if st_name not in ("free", "allocated", "down", "up", "all"):
            raise ValueError(f"unknown state '{st_name}' (use free, allocated, down, up, all)")
        rows.append(_row(st_name, s[st_name], st_name))
    for row in rows:
        print(f"{row[0]:>10} {row[1]:>6} {row[2]:>8} {row[3]:>8} {row[4]}")
    return 0

