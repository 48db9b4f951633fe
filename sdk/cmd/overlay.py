"""`flux overlay status|lookup|parentof|disconnect`: the shape and health of the TBON."""

from __future__ import annotations

from flux.cmd.util import Parser, cli, open_handle


def _tree(h, rank: int, hosts: list[str], prefix: str, last: bool, top: bool, lines: list[str],
          status_of: dict) -> None:
    st = status_of.get(rank)
    if st is None:
        try:
            st = h.rpc("overlay.health", nodeid=rank).get()["status"]
        except OSError:
            st = "lost"
    host = hosts[rank] if rank < len(hosts) else ""
    connector = "" if top else ("└─ " if last else "├─ ")
    lines.append(f"{prefix}{connector}{rank} {host}: {st}")
    if st in ("lost", "offline"):
        return
    health = h.rpc("overlay.health", nodeid=rank).get()
    kids = health["children"]
    for c in kids:
        status_of[c["rank"]] = c["status"] if c["status"] in ("lost", "offline") else None
    child_prefix = prefix if top else prefix + ("   " if last else "│  ")
    for i, c in enumerate(kids):
        _tree(h, c["rank"], hosts, child_prefix, i == len(kids) - 1, False, lines, status_of)


@cli("flux-overlay")
def main(argv: list[str]) -> int:
    p = Parser("flux overlay")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("status", help="show overlay health")
    s.add_argument("-r", "--rank", type=int, default=0)
    s.add_argument("-s", "--summary", action="store_true")
    sub.add_parser("parentof").add_argument("rank", type=int)
    args = p.parse_args(argv)
    h = open_handle("flux-overlay")
    if args.cmd == "parentof":
        size = int(h.attr_get("size"))
        if not 0 <= args.rank < size:
            raise ValueError(f"rank {args.rank} is not in this instance of size {size}")
        from flux.core.broker.topology import Topology

        topo = Topology.parse(h.attr_get("tbon.topo"), size)
        parent = topo.parent(args.rank)
        if parent is None:
            raise ValueError("rank 0 has no parent")
        print(parent)
        return 0
    from flux.core.util.hostlist import decode

    hosts = decode(h.attr_get("hostlist"))
    size = int(h.attr_get("size"))
    if not 0 <= args.rank < size:
        raise ValueError(f"rank {args.rank} is not in this instance of size {size}")
    lines: list[str] = []
    _tree(h, args.rank, hosts, "", True, True, lines, {})
    if args.summary:
        print(lines[0])
    else:
        print("\n".join(lines))
    return 0
