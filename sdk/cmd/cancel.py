"""`flux cancel`: cancel jobs by id, or select them (--all, -u, -S) through
``job-manager.raiseall`` (SPEC 10.3)."""

from __future__ import annotations

import os
import sys

PROG = "flux-cancel"
_STATES = {"depend": 2, "priority": 4, "sched": 8, "run": 16, "pending": 14, "running": 48,
           "active": 62}


def log(msg: str) -> None:
    sys.stderr.write(f"{PROG}: {msg}\n")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def parse_args(argv: list[str]):
    from flux.cmd.util import Parser

    p = Parser(PROG, usage="flux cancel [OPTIONS] [JOBID...]",
               description="Cancel pending or running jobs with an optional exception note.")
    p.add_argument("--all", action="store_true", help="Target all jobs")
    p.add_argument("-n", "--dry-run", action="store_true", help="Do not cancel any jobs")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress output when no jobs match")
    p.add_argument("-u", "--user", metavar="USER",
                   help="Set target user or 'all' (instance owner only)")
    p.add_argument("-S", "--states", action="append", metavar="STATES",
                   help="List of job states to target (default=active)")
    p.add_argument("-m", "--message", metavar="NOTE", help="Set optional cancel exception note")
    p.add_argument("jobids", metavar="JOBID...", nargs="*", help="jobids to cancel")
    return p.parse_args(argv)


def cancel_ids(args) -> int:
    from flux.job.JobID import JobID
    from flux.job.kill import cancel_async

    ids = []
    for text in args.jobids:
        try:
            ids.append(JobID(text))
        except (OSError, ValueError):
            log(f"error parsing jobid: '{text}'")
            return 1
    if not ids:
        raise ValueError("No target jobs were provided")
    if args.dry_run:
        log(f"Would cancel {_plural(len(ids), 'job')}")
        return 0
    import flux

    h = flux.Flux()
    futures = [(jobid, cancel_async(h, jobid, args.message)) for jobid in ids]
    errors = 0
    for jobid, fut in futures:
        try:
            fut.get()
        except OSError as exc:
            errors += 1
            log(f"{jobid}: {exc.strerror}")
    return 1 if errors else 0


def cancel_all(args) -> int:
    import flux

    if args.user is None:
        userid = os.getuid()
    elif args.user == "all":
        userid = 0xFFFFFFFF
    else:
        import pwd

        try:
            userid = pwd.getpwnam(args.user).pw_uid
        except KeyError:
            try:
                userid = int(args.user)
            except ValueError:
                raise ValueError(f"Invalid user {args.user} specified") from None
    mask = 0
    for state in ",".join(args.states or []).split(","):
        if not state:
            continue
        try:
            mask |= _STATES[state.strip().lower()]
        except KeyError:
            raise ValueError(f"Invalid state {state} specified") from None
    payload = {"dry_run": args.dry_run, "userid": userid, "states": mask or 62,
               "severity": 0, "type": "cancel"}
    if args.message is not None:
        payload["note"] = args.message
    resp = flux.Flux().rpc("job-manager.raiseall", payload).get()
    count, errors = resp.get("count", 0), resp.get("errors", 0)
    if count > 0:
        if args.dry_run:
            log(f"Would cancel {_plural(count, 'job')}")
        else:
            log(f"Canceled {_plural(count, 'job')} ({_plural(errors, 'error')})")
    elif not args.quiet:
        log("Matched 0 jobs")
    return 1 if errors else 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.user or args.states:
        args.all = True
    if args.jobids and args.all:
        log("Do not specify a list of jobids with --all,--user,--states options")
        return 1
    try:
        return cancel_all(args) if args.all else cancel_ids(args)
    except ValueError as exc:
        log(str(exc))
        return 1
    except OSError as exc:
        log(exc.strerror or str(exc))
        return 1
