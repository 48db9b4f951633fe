"""`flux sched match`: match jobspecs against a resource graph file, standalone (no
instance), printing the R each one gets, like Fluxion's resource-query.

    flux sched match -L cluster.toml allocate -N2 -n4 -c2
    flux sched match -L R.json -P low reserve job1.yaml job2.json
    flux sched match -L big.yaml satisfiability -n 100000
    flux sched match -L cluster.toml info
    flux sched match -L cluster.toml script commands.txt    # or - for stdin

Jobspecs accumulate within one run: the second allocate sees what the first took.
A script holds one command per line (allocate, reserve, satisfiability, cancel
JOBID, drain RANKS, undrain RANKS, info, stats), with the same options.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

from flux.cmd.util import Parser, die

PROG = "flux-sched"
FORMATS = ("rv1_nosched", "rv1", "jgf", "rlist", "none")


def _reader_for(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    low = path.lower()
    if low.endswith(".toml"):
        return "toml"
    if low.endswith((".yaml", ".yml")):
        return "yaml"
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"{path}: not JSON, TOML or YAML (give -f FORMAT)") from None
    if isinstance(doc, dict) and "execution" in doc:
        return "rv1"
    return "jgf"


def _jobspec_file(path: str) -> dict:
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else open(path).read()
    except OSError as exc:
        raise ValueError(f"cannot read jobspec {path}: {exc.strerror}") from None
    try:
        js = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"jobspec {path} is not JSON or YAML: {exc}") from None
    if not isinstance(js, dict):
        raise ValueError(f"jobspec {path} must be an object")
    return js


def _shortcut(args: Any) -> Any:
    from flux.core.resource.graph import Request

    if not any(x is not None for x in (args.ntasks, args.nodes, args.cores_per_task,
                                         args.gpus_per_task)) and not args.exclusive:
        return None
    n = args.ntasks
    nodes = args.nodes or 0
    if n is None:
        n = nodes or 1
    if nodes and nodes > n:
        raise ValueError("-N/--nodes may not be greater than -n/--ntasks")
    if args.exclusive and not nodes:
        raise ValueError("-x/--exclusive requires -N/--nodes")
    excl = args.exclusive or (nodes and args.ntasks is None)
    cons = None
    if args.requires:
        from flux.cmd.jobopts import ConstraintSyntaxError, SubmitConstraintParser

        q = " ".join(args.requires)
        try:
            cons = SubmitConstraintParser().parse(q)
        except ConstraintSyntaxError as exc:
            raise ValueError(f"--requires='{q}': {exc}") from None
    for name, v in (("ntasks", n), ("cores-per-task", args.cores_per_task or 1)):
        if v < 1:
            raise ValueError(f"--{name} must be >= 1")
    return Request.simple(n, args.cores_per_task or 1, args.gpus_per_task or 0, nodes,
                          bool(excl), _duration(args.time_limit), cons)


def _duration(text: str | None) -> float:
    if text is None:
        return 0.0
    from flux.core.util.fsd import parse_fsd

    try:
        return float(text) * 60.0  # a bare number is minutes, as for flux run -t
    except ValueError:
        return parse_fsd(text)


def _requests(args: Any) -> list[tuple[str, Any]]:
    from flux.core.resource.graph import Request

    out = []
    short = _shortcut(args)
    if short is not None:
        out.append(("(options)", short))
    for path in args.jobspec:
        try:
            out.append((path, Request.from_jobspec(_jobspec_file(path))))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    if not out:
        raise ValueError("give jobspec files or -n/-N/-c/-g options")
    return out


def _emit(alloc: Any, fmt: str) -> None:
    if fmt == "none":
        return
    if fmt == "rlist":
        from flux.core.resource.rv1 import ResourceSet

        print(ResourceSet.from_dict(alloc.to_rv1(False)).rlist())
    elif fmt == "jgf":
        print(json.dumps(alloc.to_rv1(True)["scheduling"]["graph"]))
    else:
        print(json.dumps(alloc.to_rv1(fmt == "rv1")))


class State:
    def __init__(self, graph: Any, fmt: str, now: float):
        self.g = graph
        self.fmt = fmt
        self.now = now
        self.next_id = 1
        self.failures = 0

    def match(self, cmd: str, args: Any) -> None:
        for name, req in _requests(args):
            if cmd == "satisfiability":
                ok, why = self.g.satisfiable(req)
                print(f"{name}: {'SATISFIABLE' if ok else 'UNSATISFIABLE: ' + why}")
                self.failures += not ok
                continue
            jobid = self.next_id
            self.next_id += 1
            dur = req.duration or 0.0
            alloc = self.g.allocate(req, jobid, self.now, dur)
            kind = "ALLOCATED"
            if alloc is None and cmd == "reserve":
                alloc = self.g.reserve(req, jobid, self.now, dur)
                kind = "RESERVED"
            if alloc is None:
                ok, why = self.g.satisfiable(req)
                status = "BUSY: resources are in use" if ok else f"UNSATISFIABLE: {why}"
                print(f"jobid={jobid} {name}: {status}")
                self.failures += 1
                continue
            print(f"jobid={jobid} {name}: {kind} at={alloc.starttime:g} nodes={alloc.nnodes}"
                  f" cores={alloc.ncores} gpus={alloc.ngpus}")
            _emit(alloc, self.fmt)

    def info(self) -> None:
        st = self.g.stats()
        print(f"policy: {st['policy']}  subsystems: {','.join(st['subsystems'])}"
              f"  vertices: {st['vertices']}  edges: {st['edges']}")
        print(f"{'TYPE':<10} {'TOTAL':>10} {'FREE':>10} {'DOWN':>10}")
        for t, c in st["types"].items():
            print(f"{t:<10} {c['total']:>10} {c['free']:>10} {c['down']:>10}")
        jobs = st["jobs"]
        print(f"jobs: {jobs['allocated']} allocated, {jobs['reserved']} reserved")

    def stats(self) -> None:
        m = self.g.stats()["match"]
        print(json.dumps(m))


def _match_parser() -> Parser:
    p = Parser(f"{PROG} match", description="Match jobspecs against a resource graph file.")
    p.add_argument("-L", "--load-file", metavar="FILE",
                   help="resource graph: TOML/YAML description, JGF, or R (JSON)")
    p.add_argument("-f", "--load-format", choices=("toml", "yaml", "jgf", "rv1", "hwloc"),
                   help="how to read FILE (default: from its name and contents)")
    p.add_argument("-P", "--policy", default="first",
                   help="match policy (first, low, high, locality, variation, ...)")
    p.add_argument("-F", "--format", choices=FORMATS, default="rv1_nosched",
                   help="how to print each match (default rv1_nosched)")
    p.add_argument("--no-prune", action="store_true", help="walk without pruning aggregates")
    p.add_argument("--time", type=float, default=0.0, metavar="T",
                   help="the current time for the planner (default 0)")
    p.add_argument("command", choices=("allocate", "reserve", "satisfiability", "info",
                                       "stats", "script"))
    p.add_argument("rest", nargs="*", help="jobspec files (or the script file)")
    _job_options(p)
    return p


def _job_options(p: Parser) -> None:
    p.add_argument("-n", "--ntasks", type=int)
    p.add_argument("-N", "--nodes", type=int)
    p.add_argument("-c", "--cores-per-task", type=int)
    p.add_argument("-g", "--gpus-per-task", type=int)
    p.add_argument("-x", "--exclusive", action="store_true")
    p.add_argument("-t", "--time-limit", metavar="MIN|FSD")
    p.add_argument("--requires", action="append", metavar="CONSTRAINT")


def _line_parser() -> Parser:
    p = Parser("script", add_help=False, exit_on_error=False)
    p.add_argument("command", choices=("allocate", "reserve", "satisfiability", "info", "stats",
                                       "cancel", "drain", "undrain"))
    p.add_argument("rest", nargs="*")
    _job_options(p)
    return p


def _run_command(st: State, args: Any) -> None:
    cmd = args.command
    args.jobspec = args.rest
    if cmd in ("allocate", "reserve", "satisfiability"):
        st.match(cmd, args)
    elif cmd == "info":
        st.info()
    elif cmd == "stats":
        st.stats()
    elif cmd == "cancel":
        for j in args.rest:
            st.g.free(int(j))
            print(f"jobid={j}: CANCELED")
    elif cmd == "drain":
        st.g.drain(",".join(args.rest))
    elif cmd == "undrain":
        st.g.undrain(",".join(args.rest))


def _script(st: State, path: str) -> None:
    lp = _line_parser()
    lines = sys.stdin if path == "-" else open(path)
    for lineno, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            args = lp.parse_intermixed_args(shlex.split(line))
        except Exception as exc:  # noqa: BLE001 - argparse raises ArgumentError or SystemExit
            raise ValueError(f"{path}:{lineno}: {exc}") from None
        try:
            _run_command(st, args)
        except (ValueError, LookupError) as exc:
            print(f"{path}:{lineno}: {exc}")
            st.failures += 1
        except Exception as exc:  # MatchError
            print(f"{path}:{lineno}: {exc}")
            st.failures += 1


def match_main(argv: list[str]) -> int:
    from flux.core.resource.graph import ResourceGraph

    args = _match_parser().parse_intermixed_args(argv)
    try:
        if args.load_format == "hwloc":
            g = ResourceGraph.load("hwloc", {})  # this machine
        elif not args.load_file:
            raise ValueError("give -L FILE (or -f hwloc for this machine)")
        else:
            g = ResourceGraph.load(_reader_for(args.load_file, args.load_format),
                                   args.load_file)
        g.set_policy(args.policy)
    except (ValueError, LookupError, TypeError) as exc:
        return die(PROG, str(exc))
    g.prune = not args.no_prune
    st = State(g, args.format, args.time)
    try:
        if args.command == "script":
            if len(args.rest) != 1:
                return die(PROG, "script takes one file (or - for stdin)")
            _script(st, args.rest[0])
        else:
            _run_command(st, args)
    except (ValueError, LookupError) as exc:
        return die(PROG, str(exc))
    return 1 if st.failures else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: flux sched match -L FILE [options] COMMAND [JOBSPEC...]\n\n{__doc__}")
        return 0 if argv else 1
    if argv[0] != "match":
        return die(PROG, f"unknown subcommand '{argv[0]}' (available: match)")
    return match_main(argv[1:])
