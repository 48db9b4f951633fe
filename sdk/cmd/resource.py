"""`flux resource list|info|R|status|drain|undrain|add|remove`: the instance's resources
(SPEC 10.4).

`list`, `info` and `R` show the scheduler's view (`sched.resource-status`: all, down,
allocated; up = all - down, free = up - allocated). `status`, `drain` and `undrain`
talk to the resource service; `add` and `remove` grow and shrink the instance at run
time (the scheduler keeps running jobs where they are).
"""

from __future__ import annotations

import json
import sys

from flux.cmd.util import Parser, cli, open_handle
from flux.core.resource.rv1 import Rank, RError, ResourceSet
from flux.core.util import hostlist, idset

LIST_STATES = ("up", "down", "allocated", "free", "all")
STATUS_STATES = ("all", "online", "avail", "offline", "exclude", "drain", "draining", "drained")
LIST_FORMATS = {
    "default": "{state:>10} ?:{queue:<10.10} ?:{propertiesx:<10.10+} {nnodes:>6} {ncores:>8} "
               "?:{ngpus:>8} {nodelist}",
    "rlist": "{state:>10} ?:{queue:<8.8} ?:{propertiesx:<10.10+} {nnodes:>6} {ncores:>8} "
             "{ngpus:>8} {rlist}",
}
STATUS_FORMATS = {
    "default": "{state:>10} {up:>2} {nnodes:>6} {nodelist}",
    "long": "{state:>10} {up:>2} {nnodes:>6} {reason:<30.30+} {nodelist}",
}
DRAIN_FORMATS = {
    "default": "{timestamp!d:%b%d %R::<12} {state:<8.8} {reason:<30.30+} {nodelist}",
    "long": "{timestamp!d:%FT%T::<20} {state:<8.8} {ranks:<8.8+} {reason:<30.30+} {nodelist}",
}
LIST_HEADINGS = {"state": "STATE", "queue": "QUEUE", "properties": "PROPERTIES",
                 "propertiesx": "PROPERTIES", "nnodes": "NNODES", "ncores": "NCORES",
                 "ngpus": "NGPUS", "ranks": "RANKS", "nodelist": "NODELIST", "rlist": "LIST"}
STATUS_HEADINGS = {"state": "STATE", "statex": "STATE", "up": "UP", "nnodes": "NNODES",
                   "ranks": "RANKS", "nodelist": "NODELIST", "reason": "REASON",
                   "timestamp": "TIME", "status": "STATUS"}


# ================================================================ scheduler view
def sched_view(h) -> dict[str, ResourceSet]:
    """all/down/allocated/up/free from the scheduler (the resource service if none)."""
    try:
        st = h.rpc("sched.resource-status", nodeid=0).get()
        out = {k: ResourceSet.from_dict(st[k]) for k in ("all", "down", "allocated")}
    except OSError:
        st = h.rpc("resource.status", nodeid=0).get()
        out = {"all": ResourceSet.from_dict(st["R"]), "down": ResourceSet.from_dict(st["down"]),
               "allocated": ResourceSet()}
    all_ = out["all"]
    down_ranks = set(out["down"].ranks)
    out["down"] = all_.select_ranks(down_ranks)
    out["up"] = all_.select_ranks(set(all_.ranks) - down_ranks)
    out["allocated"] = _with_hosts(out["allocated"], all_)
    out["free"] = out["up"].subtract(out["allocated"])
    return out


def _with_hosts(R: ResourceSet, ref: ResourceSet) -> ResourceSet:
    for r, rk in R.ranks.items():
        if not rk.host and r in ref.ranks:
            rk.host = ref.ranks[r].host
    R.properties = {k: v & set(R.ranks) for k, v in ref.properties.items()}
    return R


def _nonempty(R: ResourceSet) -> ResourceSet:
    return R.select_ranks([r for r, rk in R.ranks.items() if rk.cores or rk.gpus])


def _select(view: dict[str, ResourceSet], states: list[str], include: list[int] | None) -> ResourceSet:
    out = ResourceSet()
    for s in states:
        R = view[s]
        if s in ("allocated", "free"):
            R = _nonempty(R)
        out = out.union(R)
        for k, v in R.properties.items():
            out.properties.setdefault(k, set()).update(v)
    if include is not None:
        out = out.select_ranks(include)
    return out


class ListLine:
    """One line of `flux resource list`: ranks of one state sharing their properties."""

    def __init__(self, state: str, R: ResourceSet, props: tuple[str, ...], gpus_shown: bool):
        self.state, self.R, self.props, self._gpus_shown = state, R, props, gpus_shown

    @property
    def nnodes(self) -> int:
        return self.R.nnodes

    @property
    def ncores(self) -> int:
        return self.R.ncores

    @property
    def ngpus(self):
        return self.R.ngpus if self._gpus_shown else ""

    @property
    def nodelist(self) -> str:
        return self.R.hostlist() if self.R.ranks and all(self.R.nodelist()) else ""

    @property
    def ranks(self) -> str:
        return self.R.rank_idset()

    @property
    def rlist(self) -> str:
        return self.R.rlist()

    @property
    def properties(self) -> str:
        return ",".join(self.props)

    propertiesx = properties

    @property
    def queue(self) -> str:
        return ""


def _list_lines(view: dict[str, ResourceSet], states: list[str], include,
                by_props: bool = True) -> list[ListLine]:
    """Lines per state; within a state, one per set of properties when shown."""
    gpus = bool(view["all"].ngpus)
    lines = []
    for state in states:
        R = view[state]
        if state in ("allocated", "free"):
            R = _nonempty(R)
        if include is not None:
            R = R.select_ranks(include)
        groups: dict[tuple[str, ...], list[int]] = {}
        for r in sorted(R.ranks):
            props = tuple(sorted(k for k, v in view["all"].properties.items()
                                 if r in v and not k.startswith("+"))) if by_props else ()
            groups.setdefault(props, []).append(r)
        if not groups:
            groups[()] = []
        for props, ranks in groups.items():
            lines.append(ListLine(state, R.select_ranks(ranks), props, gpus))
    return lines


def _format(name_or_fmt: str, builtin: dict[str, str]) -> str:
    if name_or_fmt == "help":
        raise ValueError("formats: " + ", ".join(builtin))
    return builtin.get(name_or_fmt, name_or_fmt)


def _states(text: str, valid: tuple[str, ...]) -> list[str]:
    states = [s.strip() for s in text.split(",") if s.strip()]
    for s in states:
        if s not in valid:
            raise ValueError(f"invalid resource state '{s}' (valid: {', '.join(valid)})")
    return states


def _include(h, spec: str | None, R: ResourceSet) -> list[int] | None:
    if spec is None:
        return None
    try:
        return idset.decode(spec)
    except ValueError:
        pass
    try:
        names = set(hostlist.decode(spec))
    except ValueError as exc:
        raise ValueError(f"invalid targets '{spec}': {exc}") from None
    return [r for r, rk in R.ranks.items() if rk.host in names]


def cmd_list(h, args) -> int:
    from flux.util import OutputFormat

    states = _states(args.states, LIST_STATES)
    view = sched_view(h)
    include = _include(h, args.include, view["all"])
    fmt = OutputFormat(_format(args.format, LIST_FORMATS), headings=LIST_HEADINGS)
    by_props = bool({"properties", "propertiesx"} & set(fmt.fields))
    fmt.print_items(_list_lines(view, states, include, by_props), no_header=args.no_header)
    return 0


def cmd_info(h, args) -> int:
    view = sched_view(h)
    states = _states(args.states or "all", LIST_STATES)
    R = _select(view, states, _include(h, args.include, view["all"]))
    print(f"{R.nnodes} Nodes, {R.ncores} Cores, {R.ngpus} GPUs")
    return 0


def cmd_R(h, args) -> int:
    view = sched_view(h)
    states = _states(args.states or "all", LIST_STATES)
    R = _select(view, states, _include(h, args.include, view["all"]))
    print(json.dumps(R.to_dict()))
    return 0


# ============================================================ resource service
class StatusLine:
    def __init__(self, state: str, R: ResourceSet, ranks: list[int], reason: str = "",
                 timestamp: float = 0.0):
        self.statex, self._R, self._ranks = state, R, ranks
        self.reason, self.timestamp = reason, timestamp

    state = property(lambda self: self.statex)
    up = property(lambda self: "✔")
    status = property(lambda self: "online")
    nnodes = property(lambda self: len(self._ranks))
    ranks = property(lambda self: idset.encode(self._ranks))

    @property
    def nodelist(self) -> str:
        hosts = [self._R.ranks[r].host for r in self._ranks if r in self._R.ranks]
        return hostlist.encode(hosts) if hosts and all(hosts) else (self.ranks if self._ranks else "")


def _status_lines(h, states: list[str], include) -> list[StatusLine]:
    st = h.rpc("resource.status", nodeid=0).get()
    R = ResourceSet.from_dict(st["R"])
    excl = ResourceSet.from_dict(st.get("exclude") or {"version": 1, "execution": {"R_lite": []}})
    allR = R.union(excl)
    info = {int(k): v for k, v in (st.get("drain_info") or {}).items()}
    for k, reason in st.get("drained", {}).items():
        info.setdefault(int(k), {"reason": reason, "timestamp": 0.0})
    try:
        alloc = set(ResourceSet.from_dict(h.rpc("sched.resource-status", nodeid=0)
                                          .get()["allocated"]).ranks)
    except OSError:
        alloc = set()
    want = set(states)
    if "all" in want:
        want |= {"avail", "exclude", "draining", "drained"}
    if "drain" in want:
        want |= {"draining", "drained"}

    def keep(ranks):
        return [r for r in ranks if include is None or r in include]

    lines = []
    if "avail" in want:
        lines.append(StatusLine("avail", allR, keep(sorted(r for r in R.ranks if r not in info))))
    if "exclude" in want:
        lines.append(StatusLine("exclude", allR, keep(sorted(excl.ranks))))
    for state in ("draining", "drained"):
        if state not in want:
            continue
        ranks = keep(sorted(r for r in info if (r in alloc) == (state == "draining")))
        by_reason: dict[tuple, list[int]] = {}
        for r in ranks:
            by_reason.setdefault((info[r].get("reason", ""), info[r].get("timestamp", 0.0)), []).append(r)
        for (reason, ts), rs in by_reason.items():
            lines.append(StatusLine(state, allR, rs, reason, ts))
        if not ranks:
            lines.append(StatusLine(state, allR, []))
    return lines


def cmd_status(h, args) -> int:
    from flux.util import OutputFormat

    states = _states(args.states, STATUS_STATES) if args.states else \
        ["avail", "exclude", "draining", "drained"]
    if set(states) <= {"online", "offline"}:
        states += ["avail", "exclude", "draining", "drained"]
    if "offline" in states and "online" not in states:
        lines = []  # every broker of the resource set we know of is online
    else:
        st = h.rpc("resource.status", nodeid=0).get()
        include = _include(h, args.include, ResourceSet.from_dict(st["R"]))
        lines = _status_lines(h, states, include)
    if not args.states or args.skip_empty:
        lines = [ln for ln in lines if ln.nnodes]
    fmt = OutputFormat(_format(args.format, STATUS_FORMATS), headings=STATUS_HEADINGS)
    fmt.print_items(lines, no_header=args.no_header)
    return 0


def cmd_drain(h, args) -> int:
    from flux.util import OutputFormat

    if not args.targets:
        lines = [ln for ln in _status_lines(h, ["drain"], None) if ln.nnodes]
        fmt = OutputFormat(_format(args.format, DRAIN_FORMATS), headings=STATUS_HEADINGS)
        fmt.print_items(lines, no_header=args.no_header)
        return 0
    if args.force and args.update:
        raise ValueError("Only one of --force and --update may be specified")
    payload: dict = {"targets": args.targets, "reason": " ".join(args.reason)}
    if args.update:
        payload["mode"] = "update"
    elif args.force:
        payload["mode"] = "overwrite" if args.force == 1 else "force-overwrite"
    try:
        h.rpc("resource.drain", payload, nodeid=0).get()
    except OSError as exc:
        import errno

        if exc.errno == errno.EEXIST:
            raise OSError(exc.errno, f"{exc.strerror} (use --force to overwrite the reason)") from None
        raise
    return 0


def cmd_add(h, args) -> int:
    if args.file:
        text = sys.stdin.read() if args.file == "-" else open(args.file).read()
        try:
            R = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{args.file}: not JSON: {exc}") from None
        if args.hosts or args.cores or args.gpus:
            raise ValueError("give either an R file or --hosts/--cores/--gpus, not both")
    else:
        if not args.hosts or not args.cores:
            raise ValueError("give an R file, or --hosts and --cores (and --gpus, --properties)")
        st = h.rpc("resource.status", nodeid=0).get()
        have = ResourceSet.from_dict(st["R"]).union(
            ResourceSet.from_dict(st.get("exclude") or {"version": 1, "execution": {"R_lite": []}}))
        hosts = hostlist.decode(args.hosts)
        cores, gpus = set(idset.decode(args.cores)), set(idset.decode(args.gpus or ""))
        first = max(have.ranks, default=-1) + 1
        ranks = {first + i: Rank(first + i, h_, set(cores), set(gpus)) for i, h_ in enumerate(hosts)}
        props = {p: set(ranks) for p in (args.properties or "").split(",") if p}
        try:
            R = ResourceSet(ranks, props).to_dict()
        except RError as exc:
            raise ValueError(str(exc)) from None
    out = h.rpc("resource.add", {"R": R}, nodeid=0).get()
    print(f"added {out.get('nodelist') or 'rank ' + out.get('ranks', '')}")
    return 0


@cli("flux-resource")
def main(argv: list[str]) -> int:
    p = Parser("flux resource")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="scheduler view of resources by state")
    ls.add_argument("-s", "--states", default="free,allocated,down", metavar="STATE,...")
    ls.add_argument("-o", "--format", default="default")
    ls.add_argument("-n", "--no-header", action="store_true")
    ls.add_argument("-i", "--include", metavar="TARGETS")
    for name, helptext in (("info", "one-line summary"), ("R", "print resources as RFC 20 R")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("-s", "--states", metavar="STATE,...")
        sp.add_argument("-i", "--include", metavar="TARGETS")
    st = sub.add_parser("status", help="node states (avail, exclude, draining, drained)")
    st.add_argument("-s", "--states", metavar="STATE,...")
    st.add_argument("-o", "--format", default="default")
    st.add_argument("-n", "--no-header", action="store_true")
    st.add_argument("-i", "--include", metavar="TARGETS")
    st.add_argument("--skip-empty", action="store_true")
    dr = sub.add_parser("drain", help="take nodes out of scheduling (running jobs go on)")
    dr.add_argument("-f", "--force", action="count", default=0)
    dr.add_argument("-u", "--update", action="store_true")
    dr.add_argument("-o", "--format", default="default")
    dr.add_argument("-n", "--no-header", action="store_true")
    dr.add_argument("targets", nargs="?")
    dr.add_argument("reason", nargs="*")
    ud = sub.add_parser("undrain", help="return drained nodes to scheduling")
    ud.add_argument("targets")
    ad = sub.add_parser("add", help="add nodes to the instance (an R file, or --hosts/--cores)")
    ad.add_argument("file", nargs="?", help="R (RFC 20) of the new nodes, '-' for stdin")
    ad.add_argument("--hosts", metavar="HOSTLIST")
    ad.add_argument("--cores", metavar="IDSET", help="cores of each new node, e.g. 0-35")
    ad.add_argument("--gpus", metavar="IDSET", help="gpus of each new node, e.g. 0-3")
    ad.add_argument("--properties", metavar="NAME,...")
    rm = sub.add_parser("remove", help="remove idle nodes from the instance")
    rm.add_argument("targets")
    args = p.parse_args(argv)
    h = open_handle("flux-resource")
    if args.cmd == "undrain":
        h.rpc("resource.undrain", {"targets": args.targets}, nodeid=0).get()
        return 0
    if args.cmd == "remove":
        h.rpc("resource.remove", {"targets": args.targets}, nodeid=0).get()
        return 0
    handlers = {"list": cmd_list, "info": cmd_info, "R": cmd_R, "status": cmd_status,
                "drain": cmd_drain, "add": cmd_add}
    return handlers[args.cmd](h, args)
