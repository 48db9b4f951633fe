"""`flux jobs`: list jobs (SPEC 10.2; flux-jobs(1)).

By default: the caller's pending and running jobs, at most 1000, in the default format
`{id.f58:>12} ?:{queue:<8.8} +:{username:<8} {name:<10.10+} {status_abbrev:>2.2}
{ntasks:>6} {nnodes:>6h} {contextual_time!F:>8h} {contextual_info}`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from flux.cmd.util import cli
from flux.job.info import JobInfo, JobInfoFormat, job_fields_to_attrs
from flux.job.JobID import JobID
from flux.util import (
    FilterAction,
    FilterActionSetUpdate,
    FilterActionUser,
    FilterTrueAction,
    UtilConfig,
    help_formatter,
    parse_datetime,
)

PROG = "flux-jobs"
LOGGER = logging.getLogger(PROG)
FLUX_USERID_UNKNOWN = 0xFFFFFFFF

_COMMON = "{id.f58:>12} ?:{queue:<8.8} +:{username:<8} {name:<10.10+} "


class FluxJobsConfig(UtilConfig):
    """`flux-jobs.{toml,yaml,json}`: named formats in `[formats.NAME]`."""

    builtin_formats = {
        "default": {
            "description": "Default flux-jobs format string",
            "format": _COMMON + "{status_abbrev:>2.2} {ntasks:>6} {nnodes:>6h} "
                                "{contextual_time!F:>8h} {contextual_info}",
        },
        "cute": {
            "description": "Cute flux-jobs format string (default with emojis)",
            "format": _COMMON + "{status_emoji:>5.5} {ntasks:>6} {nnodes:>6h} "
                                "{contextual_time!F:>8h} {contextual_info}",
        },
        "long": {
            "description": "Extended flux-jobs format string",
            "format": _COMMON + "{status:>9.9} {ntasks:>6} {nnodes:>6h} "
                                "{t_submit!d:%b%d %R::>12} {t_remaining!F:>12h} "
                                "{contextual_time!F:>8h} {contextual_info}",
        },
        "deps": {
            "description": "Show job urgency, priority, and dependencies",
            "format": "{id.f58:>12} ?:{queue:<8.8} {name:<10.10+} {urgency:<3} "
                      "{priority:<12} {state:<8.8} {dependencies}",
        },
        "endreason": {
            "description": "Show why each job ended",
            "format": _COMMON + "{status_abbrev:>2.2} {t_inactive!d:%b%d %R::>12h} "
                                "{inactive_reason}",
        },
    }

    def __init__(self) -> None:
        super().__init__(name="flux-jobs", initial_dict={"formats": dict(self.builtin_formats)})


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="flux-jobs", allow_abbrev=False,
                                formatter_class=help_formatter())
    p.add_argument("-a", action=FilterTrueAction, help="List jobs in all states")
    p.add_argument("-A", action=FilterTrueAction, help="List all jobs for all users")
    p.add_argument("-c", "--count", action=FilterAction, type=int, metavar="N", default=1000,
                   help="Limit output to N jobs (default 1000, 0 = no limit)")
    p.add_argument("-f", "--filter", action=FilterActionSetUpdate, metavar="STATE|RESULT",
                   default=set(), help="List jobs with specific job state or result")
    p.add_argument("--since", action=FilterAction, metavar="WHEN", default="",
                   help="Include jobs that have become inactive since WHEN "
                        "(implies -a if no other --filter option is specified)")
    p.add_argument("-n", "--no-header", action="store_true", help="Suppress the header line")
    p.add_argument("--suppress-header", action="store_true", dest="no_header",
                   help=argparse.SUPPRESS)
    p.add_argument("-u", "--user", action=FilterActionUser, metavar="[USERNAME|UID]",
                   default=str(os.getuid()),
                   help='Limit output to a username or userid ("all" for all users)')
    p.add_argument("--name", action=FilterAction, metavar="JOB-NAME",
                   help="Limit output to a job name")
    p.add_argument("-q", "--queue", action=FilterActionSetUpdate, default=set(),
                   metavar="QUEUE,...", help="Limit output to specific queue or queues")
    p.add_argument("-i", "--include", metavar="HOSTS|RANKS",
                   help="Limit output to jobs allocated to HOSTS or RANKS "
                        "(a hostlist or an idset)")
    p.add_argument("-o", "--format", default="default", metavar="FORMAT",
                   help="Output format (Python format string) or a format name "
                        "('help' lists the names)")
    p.add_argument("--sort", default="", metavar="KEY,...", help="Sort order ([-]key,...)")
    p.add_argument("--json", action="store_true", help="Output jobs as JSON")
    p.add_argument("--color", metavar="WHEN", choices=["never", "always", "auto"], nargs="?",
                   const="always", default="auto",
                   help="Colorize output; WHEN is never, always or auto (default)")
    p.add_argument("-R", "--recursive", action="store_true", help="List jobs recursively")
    p.add_argument("-L", "--level", type=int, metavar="N", default=9999,
                   help="With --recursive, only descend N levels")
    p.add_argument("--recurse-all", action="store_true",
                   help="With --recursive, recurse into every user's instances")
    p.add_argument("--threads", type=int, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--stats", action="store_true", help="Print job statistics before the header")
    p.add_argument("--stats-only", action="store_true",
                   help="Print job statistics only; exit 1 if no job is active")
    p.add_argument("jobids", metavar="JOBID", nargs="*", help="Limit output to these job ids")
    p.add_argument("--from-stdin", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(filtered=False, filtereduser=False)
    args = p.parse_args(argv)
    ids = []
    for text in args.jobids:
        try:
            ids.append(JobID(text))
        except (ValueError, OSError):
            p.error(f"argument JOBID: invalid JobID value: '{text}'")
    args.jobids = ids
    return args


def _constraint_for_include(text: str) -> dict:
    from flux.core.util import hostlist, idset

    try:
        return {"ranks": [idset.encode(idset.decode(text))]}
    except ValueError:
        pass
    try:
        return {"hostlist": [hostlist.encode(hostlist.decode(text))]}
    except ValueError:
        raise ValueError(f"-i/--include: invalid targets: {text}") from None


def fetch_jobs_flux(args: argparse.Namespace, fields: list[str], handle: Any = None
                    ) -> tuple[list[JobInfo], bool]:
    import flux
    from flux.job.list import JobList

    if handle is None:
        handle = flux.Flux()
    attrs = job_fields_to_attrs(fields)
    if args.color in ("always", "auto"):
        attrs.update(("result", "annotations"))
    if args.recursive:
        attrs.update(("annotations", "state", "result", "userid"))
    if args.json:
        attrs.add("all")
    user = args.user
    if args.A:
        user = "all"
    since = 0.0
    filters = set(args.filter)
    if args.since:
        if not filters:
            args.a = True
        try:
            since = parse_datetime(args.since).timestamp()
        except ValueError:
            try:
                since = float(args.since)
            except ValueError:
                raise ValueError(f"--since: invalid datetime '{args.since}'") from None
        if since > parse_datetime("now").timestamp():
            raise ValueError(f"--since={args.since} appears to be in the future")
    if args.a:
        if filters:
            LOGGER.warning("Both -a and --filter specified, ignoring -a")
        else:
            filters = {"pending", "running", "inactive"}
    if not filters:
        filters = {"pending", "running"}
    constraint = None
    if args.include:
        constraint = _constraint_for_include(args.include)
        if not args.filtereduser:
            user = "all"
    count = args.count
    jl = JobList(handle, ids=args.jobids, attrs=sorted(attrs), filters=sorted(filters),
                 user=user, max_entries=(count + 1 if count > 0 else count), since=since,
                 name=args.name, queue=sorted(args.queue) or None, constraint=constraint)
    jobs = jl.jobs()
    truncated = False
    if count > 0 and len(jobs) > count:
        jobs = jobs[:count]
        truncated = True
    if any(f.startswith("instance.") for f in fields):
        for job in jobs:
            job.get_instance_info()
    for err in jl.errors:
        print(err, file=sys.stderr)
    return jobs, truncated


def fetch_jobs_stdin() -> tuple[list[JobInfo], bool]:
    """Jobs from JSON objects on stdin, one per line (for testing; filters are ignored)."""
    jobs = []
    for lineno, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            jobs.append(JobInfo(json.loads(line)))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"JSON input error: line {lineno}: {err}") from None
    return jobs, False


_COLORS = {"COMPLETED": "\033[01;32m", "FAILED": "\033[01;31m", "CANCELED": "\033[37m",
           "TIMEOUT": "\033[01;31m"}


def _color_on(args: argparse.Namespace) -> bool:
    return args.color == "always" or (args.color == "auto" and sys.stdout.isatty())


def _is_user_instance(job: JobInfo, args: argparse.Namespace) -> bool:
    return bool(job.uri) and job.status_abbrev == "R" and (
        args.recurse_all or job.userid == os.getuid())


def print_jobs(jobs: list[JobInfo], args: argparse.Namespace, formatter: JobInfoFormat,
               path: str = "", level: int = 0) -> list[dict]:
    children: list[JobInfo] = []
    result: list[dict] = []
    by_id: dict[int, dict] = {}
    color = _color_on(args)

    def pre(job: JobInfo) -> None:
        code = None
        if color:
            code = _COLORS.get(job.result) if job.result else (
                "\033[01;34m" if job.uri else None)
        job.__dict__["_color_set"] = code is not None
        if code:
            sys.stdout.write(code)

    def post(job: JobInfo) -> None:
        if job.__dict__.get("_color_set"):
            sys.stdout.write("\033[0;0m")
        if args.recursive and _is_user_instance(job, args):
            children.append(job)

    if args.json:
        for job in jobs:
            d = job.to_dict()
            result.append(d)
            by_id[int(job.id)] = d
            if args.recursive and _is_user_instance(job, args):
                children.append(job)
    else:
        formatter.print_items(jobs, no_header=True, pre=pre, post=post)
    if not args.recursive or args.level == level:
        return result
    args.jobids = []  # ids only select jobs at the top level
    prefix = f"{path}/" if path else ""
    for job in children:
        import flux
        from flux.job.stats import JobStats

        try:
            h = flux.Flux(job.uri.local)
            sub, _ = fetch_jobs_flux(args, formatter.fields, handle=h)
            stats = JobStats(h).update_sync() if args.stats else None
        except OSError:
            continue  # not ours, not up yet, or gone: skip it
        if args.json:
            by_id[int(job.id)]["jobs"] = [x.to_dict() for x in sub]
            continue
        thispath = f"{prefix}{job.id.f58}"
        print(f"\n{thispath}:")
        if stats is not None:
            print(f"{stats.running} running, {stats.successful} completed, "
                  f"{stats.failed} failed, {stats.pending} pending")
        print_jobs(sub, args, formatter, path=thispath, level=level + 1)
    return result


@cli(PROG)
def main(argv: list[str]) -> int:
    logging.basicConfig(format="%(name)s: %(levelname)s: %(message)s")
    args = parse_args(argv)
    if args.json and (args.stats or args.stats_only):
        return _error("--json incompatible with --stats or --stats-only")
    if args.jobids and args.filtered and not args.recursive:
        LOGGER.warning("Filtering options ignored with jobid list")
    if args.recurse_all:
        args.recursive = True
    if args.json:
        args.no_header = True
    fmt = FluxJobsConfig().load().get_format_string(args.format)
    try:
        formatter = JobInfoFormat(fmt)
    except ValueError as err:
        raise ValueError(f"Error in user format: {err}") from None
    if args.stats or args.stats_only:
        import flux
        from flux.job.stats import JobStats

        queue = next(iter(args.queue)) if len(args.queue) == 1 else None
        stats = JobStats(flux.Flux(), queue=queue).update_sync()
        print(f"{stats.running} running, {stats.successful} completed, {stats.failed} failed, "
              f"{stats.pending} pending, {stats.inactive_purged} inactive purged")
        if args.stats_only:
            return 0 if stats.active else 1
    if args.sort:
        formatter.set_sort_keys(args.sort)
    if args.from_stdin:
        jobs, truncated = fetch_jobs_stdin()
    else:
        jobs, truncated = fetch_jobs_flux(args, formatter.fields)
    sformatter = JobInfoFormat(formatter.filter(jobs))
    if not args.no_header:
        print(sformatter.header())
    result = print_jobs(jobs, args, sformatter)
    if args.json:
        if len(args.jobids) == 1:
            if result:
                print(json.dumps(result[0]))
        else:
            print(json.dumps({"jobs": result}))
    if not args.no_header and truncated:
        print(f"warning: output truncated at {args.count} jobs.", file=sys.stderr)
        print("Use --count to increase returned results or use filters to alter results.",
              file=sys.stderr)
    return 0


def _error(text: str) -> int:
    sys.stderr.write(f"{PROG}: {text}\n")
    return 1

