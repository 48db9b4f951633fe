"""`flux pstree`: the tree of running jobs by name, descending into the child
instances among them, like pstree(1) for processes (SPEC 10.6).

The enclosing instance is the root (`.`). A running job that recorded a URI (a
`flux batch`/`flux alloc` instance) is a parent: its own jobs are listed from it,
recursively (`-L N` limits the depth). Identical leaves are combined as
`N*[label]`. Labels and the details shown before the tree (`-x`, `-d NAME`,
`--detail-format`) use the format fields of `flux jobs`, including `instance.*`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

PROG = "flux-pstree"

DETAILS = {
    "default": "{id.f58:>12} {username:<8.8} {status_abbrev:>2.2} {ntasks:>6h} {nnodes:>6h} "
               "{runtime!F:>8h}",
    "resources": "{id.f58:>12} {instance.resources.all.nnodes:>5h} "
                 "{instance.resources.allocated.nnodes:>5h} {instance.resources.all.ncores:>5h} "
                 "{instance.resources.allocated.ncores:>5h} {instance.resources.all.ngpus:>5h} "
                 "{instance.resources.allocated.ngpus:>5h}",
    "progress": "{id.f58:>12} {ntasks:>6h} {instance.stats.total:>6h} "
                "{instance.progress!P:>5h} {instance.utilization!P:>5h} "
                "{instance.gpu_utilization!P:>5h} {contextual_time!H:>10h}",
    "stats": "{id.f58:>12} {instance.stats.pending:>6h} {instance.stats.running:>6h} "
             "{instance.stats.successful:>6h} {instance.stats.failed:>6h}",
}


class Node:
    """A job in the tree (None for the root) and the jobs of its instance."""

    def __init__(self, job: Any = None):
        self.job = job
        self.children: list[Node] = []

    @property
    def is_parent(self) -> bool:
        return bool(self.children)


class Tree:
    def __init__(self, args, label_fmt, parent_fmt, detail_fmt):
        self.args = args
        self.label_fmt = label_fmt
        self.parent_fmt = parent_fmt
        self.detail_fmt = detail_fmt
        fields = set(label_fmt.fields) | set(parent_fmt.fields)
        if detail_fmt is not None:
            fields |= set(detail_fmt.fields)
        from flux.job.info import job_fields_to_attrs

        attrs = job_fields_to_attrs(f[2:] if f.startswith("0.") else f for f in fields)
        self.attrs = sorted(attrs | {"annotations", "state", "result", "name"})
        self.want_instance = any("instance." in f for f in fields)

    def _filters(self) -> list[str]:
        if self.args.filter:
            return [self.args.filter]
        return ["pending,running,inactive"] if self.args.all else ["running"]

    def jobs(self, h, ids=None) -> list[Any]:
        from flux.job.list import JobList

        jl = JobList(h, attrs=self.attrs, filters=[] if ids else self._filters(),
                     ids=ids or (), max_entries=self.args.count)
        jobs = jl.jobs()
        for err in jl.errors:
            sys.stderr.write(f"{PROG}: {err}\n")
        return jobs

    def build(self, h, node: Node, depth: int, ids=None) -> None:
        for job in self.jobs(h, ids):
            child = Node(job)
            if self.want_instance:
                job.get_instance_info()
            node.children.append(child)
            limit = self.args.level
            if job.uri is not None and job.state_single == "R" and (limit is None or depth < limit):
                self._descend(job, child, depth + 1)

    def _descend(self, job, node: Node, depth: int) -> None:
        import flux

        uri = job.uri.local if os.environ.get("FLUX_URI_RESOLVE_LOCAL") else str(job.uri)
        try:
            h = flux.Flux(uri)
        except OSError:
            return  # the instance is gone or still starting: shown as a leaf
        try:
            self.build(h, node, depth)
        except OSError:
            pass
        finally:
            h.close()

    # ------------------------------------------------------------ output
    def label(self, node: Node) -> str:
        fmt = self.parent_fmt if node.is_parent else self.label_fmt
        text = fmt.format(node.job)
        if node.is_parent and self.args.parent_ids:
            text = f"{node.job.id.f58} {text}"
        return text

    def lines(self, root: Node, skip_root: bool) -> list[str]:
        a = self.args
        if a.ascii:
            mid, last, bar, space = ("|-", "`-", "|", " ") if a.compact else \
                ("|-- ", "`-- ", "|   ", "    ")
        else:
            mid, last, bar, space = ("├", "└", "│", " ") if a.compact else \
                ("├── ", "└── ", "│   ", "    ")
        combine = not a.no_combine and self.detail_fmt is None
        out: list[str] = []

        def entries(node: Node) -> list[tuple[Node | None, str]]:
            items: list[tuple[Node | None, str]] = []
            counts: dict[str, list] = {}
            for c in node.children:
                text = self.label(c)
                if combine and not c.is_parent:
                    if text in counts:
                        counts[text][0] += 1
                        continue
                    counts[text] = [1, len(items)]
                items.append((c, text))
            if combine:
                for text, (n, i) in counts.items():
                    if n > 1:
                        items[i] = (None, f"{n}*[{text}]")
            return items

        def detail(node: Node | None) -> str:
            if self.detail_fmt is None:
                return ""
            if node is None or node.job is None:
                return " " * len(self.detail_fmt.header()) + " "
            return self.detail_fmt.format(node.job) + " "

        def walk(node: Node, prefix: str) -> None:
            items = entries(node)
            for i, (child, text) in enumerate(items):
                is_last = i == len(items) - 1
                out.append(detail(child) + prefix + (last if is_last else mid) + text)
                if child is not None and child.children:
                    walk(child, prefix + (space if is_last else bar))

        if skip_root:
            for child, text in entries(root):
                out.append(detail(child) + text)
                if child is not None and child.children:
                    walk(child, "")
        else:
            out.append(detail(None) + ".")
            walk(root, "")
        return out


def build_parser():
    from flux.cmd.util import Parser

    p = Parser(PROG, usage="flux pstree [OPTIONS] [JOBID...]",
               description="Display a tree of running jobs by name, with the jobs of "
                           "child instances below them")
    p.add_argument("-a", "--all", action="store_true",
                   help="Include jobs in all states (--filter=pending,running,inactive)")
    p.add_argument("-c", "--count", type=int, default=1000, metavar="N",
                   help="Limit output to N jobs at every level (default 1000)")
    p.add_argument("-f", "--filter", metavar="STATE|RESULT",
                   help="Include jobs with these states or results (comma separated)")
    p.add_argument("-l", "--long", action="store_true", help="Do not truncate long lines")
    p.add_argument("-p", "--parent-ids", action="store_true", help="Prepend jobid to parent labels")
    p.add_argument("-L", "--level", type=int, metavar="N",
                   help="Only descend N levels into child instances")
    p.add_argument("-x", "--extended", action="store_true",
                   help="Print extended details before the tree (--details=default)")
    p.add_argument("-d", "--details", metavar="NAME", choices=sorted(DETAILS),
                   help="Details format to show before the tree: " + ", ".join(sorted(DETAILS)))
    p.add_argument("--detail-format", metavar="FORMAT", help="Explicit details format")
    p.add_argument("-n", "--no-header", action="store_true",
                   help="No header row with extended details")
    p.add_argument("-X", "--no-combine", action="store_true",
                   help="Do not combine identical leaves")
    p.add_argument("-o", "--label", metavar="FORMAT",
                   help="Label format, with flux-jobs fields (default '{name}')")
    p.add_argument("--parent-label", metavar="FORMAT",
                   help="Label format for parents (instances with jobs)")
    p.add_argument("--skip-root", choices=("yes", "no"),
                   help="Skip (yes) or force (no) display of the enclosing instance")
    p.add_argument("-C", "--compact", action="store_true", help="Use compact tree connectors")
    p.add_argument("--ascii", action="store_true", help="Use ascii tree connectors")
    p.add_argument("jobids", nargs="*", metavar="JOBID")
    return p


def main(argv: list[str]) -> int:
    import flux
    from flux.job.info import JobInfoFormat
    from flux.job.JobID import JobID

    args = build_parser().parse_args(argv)
    if args.count < 1:
        return _die(f"--count must be at least 1, not {args.count}")
    default_label = "{name}:{status_abbrev}" if (args.all or args.filter) else "{name}"
    detail = args.detail_format or (DETAILS[args.details] if args.details else None) \
        or (DETAILS["default"] if args.extended else None)
    try:
        label_fmt = JobInfoFormat(args.label or default_label)
        parent_fmt = JobInfoFormat(args.parent_label or args.label or default_label)
        detail_fmt = JobInfoFormat(detail) if detail else None
        tree = Tree(args, label_fmt, parent_fmt, detail_fmt)
        ids = [JobID(j) for j in args.jobids] if args.jobids else None
        root = Node()
        h = flux.Flux()
        tree.build(h, root, 0, ids)
    except (OSError, ValueError) as exc:
        return _die(getattr(exc, "strerror", None) or str(exc))
    skip_root = bool(args.jobids or detail) if args.skip_root is None \
        else args.skip_root == "yes"
    lines = tree.lines(root, skip_root)
    if detail_fmt is not None and not args.no_header:
        lines.insert(0, detail_fmt.header())
    width = None
    if not args.long:
        try:
            width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS") else \
                (os.get_terminal_size().columns if sys.stdout.isatty() else None)
        except (ValueError, OSError):
            width = None
    for line in lines:
        print(line if width is None else line[:width])
    return 0


def _die(msg: str) -> int:
    sys.stderr.write(f"{PROG}: {msg}\n")
    return 1
