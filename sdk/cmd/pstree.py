"""`flux pstree`: a tree of jobs by name, like pstree(1) for processes (SPEC 10.6).

Jobs come from ``job-list.list``.  The enclosing instance is the root (``.``); jobs
are its children; identical leaves are combined as ``N*[label]``.  (Descending into
nested instances comes with instance support: every job is a leaf for now.)
"""

from __future__ import annotations

import os
import sys
import time

PROG = "flux-pstree"
_STATE_ABBREV = {1: "N", 2: "D", 4: "P", 8: "S", 16: "R", 32: "C"}
_RESULT_ABBREV = {1: "CD", 2: "F", 4: "CA", 8: "TO"}
_STATES = {"depend": 2, "priority": 4, "sched": 8, "run": 16, "cleanup": 32, "inactive": 64,
           "pending": 14, "running": 48, "active": 62}
_RESULTS = ("completed", "failed", "canceled", "timeout")
ATTRS = ["id", "userid", "name", "state", "result", "ntasks", "nnodes", "t_run", "t_cleanup",
         "t_submit", "success"]


def _fsd(secs: float) -> str:
    if secs < 1e-3:
        return "0s"
    if secs < 10:
        return f"{secs:.3f}s"
    if secs < 60:
        return f"{secs:.4g}s"
    if secs < 3600:
        return f"{secs / 60:.4g}m"
    if secs < 86400:
        return f"{secs / 3600:.4g}h"
    return f"{secs / 86400:.4g}d"


class JobRow:
    """Fields usable in -o/--label formats: id (with .f58/.dec/...), name, userid,
    username, state, status_abbrev, ntasks, nnodes, runtime."""

    def __init__(self, d: dict):
        from flux.job.JobID import JobID

        self.d = d
        self.id = JobID(d["id"])
        self.name = d.get("name", "")
        self.userid = d.get("userid", -1)
        self.ntasks = d.get("ntasks", "")
        self.nnodes = d.get("nnodes", "")
        state = d.get("state", 0)
        self.status_abbrev = (_RESULT_ABBREV.get(d.get("result"), "F") if state == 64
                              else _STATE_ABBREV.get(state, "?"))
        t_run, t_clean = d.get("t_run", 0.0), d.get("t_cleanup", 0.0)
        self.runtime = (t_clean - t_run) if t_run and t_clean else (time.time() - t_run if t_run else 0.0)

    @property
    def username(self) -> str:
        import pwd

        try:
            return pwd.getpwuid(self.userid).pw_name
        except (KeyError, TypeError):
            return str(self.userid)

    def format(self, fmt: str) -> str:
        return fmt.format(**{k: getattr(self, k) for k in (
            "id", "name", "userid", "username", "ntasks", "nnodes", "status_abbrev")},
            runtime=_fsd(self.runtime))


def _constraint(args) -> dict:
    terms: list[dict] = [{"userid": [os.getuid()]}]
    mask, results = 0, []
    spec = args.filter or ("pending,running,inactive" if args.all else "running")
    for word in spec.lower().split(","):
        if word in _STATES:
            mask |= _STATES[word]
        elif word in _RESULTS:
            results.append(word)
        else:
            raise ValueError(f"invalid filter '{word}'")
    sel = ([{"states": [mask]}] if mask else []) + ([{"results": results}] if results else [])
    terms.append(sel[0] if len(sel) == 1 else {"or": sel})
    return {"and": terms}


def _combine(labels: list[str], combine: bool) -> list[str]:
    if not combine:
        return labels
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return [label if n == 1 else f"{n}*[{label}]" for label, n in counts.items()]


def main(argv: list[str]) -> int:
    import flux
    from flux.cmd.util import Parser

    p = Parser(PROG, usage="flux pstree [OPTIONS] [JOBID...]",
               description="Display a tree of running jobs by name")
    p.add_argument("-a", "--all", action="store_true", help="Include jobs in all states")
    p.add_argument("-c", "--count", type=int, default=1000, metavar="N",
                   help="Limit output to N jobs at every level (default 1000)")
    p.add_argument("-f", "--filter", metavar="STATE|RESULT", help="Include jobs with these states/results")
    p.add_argument("-l", "--long", action="store_true", help="Do not truncate long lines")
    p.add_argument("-x", "--extended", action="store_true", help="Print extended details before tree")
    p.add_argument("-n", "--no-header", action="store_true", help="No header with extended details")
    p.add_argument("-X", "--no-combine", action="store_true", help="Do not combine identical leaves")
    p.add_argument("-o", "--label", metavar="FORMAT", help="Label format (e.g. '{name}:{id}')")
    p.add_argument("--skip-root", choices=("yes", "no"), help="Skip or force display of the root")
    p.add_argument("-C", "--compact", action="store_true", help="Use compact tree connectors")
    p.add_argument("--ascii", action="store_true", help="Use ascii tree connectors")
    p.add_argument("-L", "--level", type=int, metavar="N", help="Only descend N levels (unused)")
    p.add_argument("jobids", nargs="*", metavar="JOBID")
    args = p.parse_args(argv)
    label_fmt = args.label or ("{name}:{status_abbrev}" if (args.all or args.filter) else "{name}")
    try:
        h = flux.Flux()
        if args.jobids:
            from flux.job.JobID import JobID

            rows = []
            for text in args.jobids:
                resp = h.rpc("job-list.list-id", {"id": int(JobID(text)), "attrs": ATTRS}).get()
                rows.append(JobRow(resp["job"]))
        else:
            resp = h.rpc("job-list.list", {"max_entries": args.count, "attrs": ATTRS,
                                           "constraint": _constraint(args)}).get()
            rows = [JobRow(j) for j in resp.get("jobs", [])]
        labels = [r.format(label_fmt) for r in rows]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        sys.stderr.write(f"{PROG}: {getattr(exc, 'strerror', None) or exc}\n")
        return 1
    skip_root = bool(args.jobids or args.extended) if args.skip_root is None else args.skip_root == "yes"
    if args.ascii:
        mid, last = ("|-", "`-") if args.compact else ("|-- ", "`-- ")
    else:
        mid, last = ("├", "└") if args.compact else ("├── ", "└── ")
    width = None if args.long or not sys.stdout.isatty() else os.get_terminal_size().columns
    lines: list[str] = []
    detail: list[str] = []
    if args.extended:
        if not args.no_header:
            lines.append(f"{'JOBID':>12} {'USER':<8} {'ST':>2} {'NTASKS':>6} {'NNODES':>6} {'RUNTIME':>8}")
        for r in rows:
            detail.append(f"{r.id.f58:>12} {r.username:<8.8} {r.status_abbrev:>2} {r.ntasks!s:>6} "
                          f"{r.nnodes!s:>6} {_fsd(r.runtime):>8} ")
        tree = labels if skip_root else labels  # details are per job: no combining
        for i, text in enumerate(tree):
            lines.append(detail[i] + text)
    else:
        shown = _combine(labels, not args.no_combine)
        if not skip_root:
            lines.append(".")
            for i, text in enumerate(shown):
                lines.append((last if i == len(shown) - 1 else mid) + text)
        else:
            lines.extend(shown)
    for line in lines:
        print(line if width is None else line[:width])
    return 0
