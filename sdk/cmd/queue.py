"""`flux queue`: status, enable, disable, start, stop, drain, idle, list (SPEC 10.4,
RFC 33), through the job manager's queue RPCs."""

from __future__ import annotations

import errno
import sys

PROG = "flux-queue"


class QueueError(Exception):
    pass


def _rpc(h, topic: str, payload: dict | None = None, what: str = "") -> dict:
    try:
        return h.rpc(topic, payload or {}, nodeid=0).get() or {}
    except OSError as exc:
        raise QueueError(f"{what or topic.split('.')[-1]}: {exc.strerror}") from None


def print_enable_status(name: str | None, status: dict) -> None:
    prefix = f"{name}: " if name else ""
    if status.get("enable"):
        print(f"{prefix}Job submission is enabled")
    else:
        print(f"{prefix}Job submission is disabled: {status.get('disable_reason')}")


def print_start_status(name: str | None, status: dict) -> None:
    prefix = f"{name}: " if name else ""
    if status.get("start"):
        print(f"{prefix}Scheduling is started")
    else:
        reason = f": {status['stop_reason']}" if status.get("stop_reason") else ""
        print(f"{prefix}Scheduling is stopped{reason}")


def print_queue_status(name: str | None, status: dict) -> None:
    print_enable_status(name, status)
    print_start_status(name, status)


def _status_one(h, name: str | None) -> dict:
    return _rpc(h, "job-manager.queue-status", {"name": name} if name else {}, "status")


def queue_statuses(h, queue: str | None, verbose: bool = False) -> list[tuple[str | None, dict]]:
    queues = _rpc(h, "job-manager.queue-list", {}, "list").get("queues", [])
    if queue and not verbose:
        return [(queue, _status_one(h, queue))]
    if queues:
        return [(q, _status_one(h, q)) for q in queues]
    return [(queue, _status_one(h, queue))]


def alloc_query(h) -> None:
    q = _rpc(h, "job-manager.alloc-query", {}, "alloc-query")
    print(f"{q.get('queue_length', 0)} alloc requests queued")
    print(f"{q.get('alloc_pending', 0)} alloc requests pending to scheduler")
    print(f"{q.get('running', 0)} running jobs")


def sched_policy(h) -> dict | None:
    """The scheduler's policies (`sched.queue-policy`), or None if it has none."""
    try:
        return h.rpc("sched.queue-policy", {}, nodeid=0).get() or {}
    except OSError:
        return None


def print_policy(info: dict) -> None:
    print(f"Queue policy: {info.get('description') or info.get('queue-policy')}")
    print(f"Match policy: {info.get('match-policy')}")
    if info.get("error"):
        print(f"Scheduler error: {info['error']}")


def _policy(h, args) -> int:
    payload: dict = {}
    if args.name:
        payload["queue-policy"] = args.name
    if args.params:
        payload["queue-params"] = ",".join(args.params)
    if args.match_policy:
        payload["match-policy"] = args.match_policy
    if sched_policy(h) is None:
        module = _rpc(h, "attr.get", {"name": "sched.module"}, "policy").get("value", "?")
        raise QueueError(f"policy: the scheduler '{module}' has no queue policies "
                         f"(start the instance with -Ssched.module=graph)")
    info = _rpc(h, "sched.queue-policy", payload, "policy")
    print_policy(info)
    return 0


def _check_all(h, name: str | None, all_queues: bool) -> None:
    if not name and not all_queues:
        if _rpc(h, "job-manager.queue-list", {}, "list").get("queues"):
            raise QueueError("Named queues are defined. Specify queues or use --all.")


def _timeout(text: str | None) -> float:
    if text is None:
        return -1.0
    from flux.core.util.fsd import parse_fsd

    try:
        return parse_fsd(text)
    except ValueError as exc:
        raise QueueError(f"--timeout: {exc}") from None


def _wait(h, topic: str, what: str, timeout: float) -> dict:
    f = h.rpc(topic, {}, nodeid=0)
    try:
        f.wait_for(timeout)
        return f.get() or {}
    except TimeoutError:
        raise QueueError(f"{what}: timeout") from None
    except OSError as exc:
        if exc.errno == errno.ETIMEDOUT:
            raise QueueError(f"{what}: timeout") from None
        raise QueueError(f"{what}: {exc.strerror}") from None


def _parser():
    from flux.cmd.util import Parser

    p = Parser(PROG, usage="flux queue SUBCOMMAND [OPTIONS]",
               description="Control and query the job queues")
    sub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")

    def common(name: str, help_: str, all_opt: bool = True, message: bool = False):
        sp = sub.add_parser(name, help=help_, allow_abbrev=False)
        sp.add_argument("-q", "--queue", dest="old_queue", metavar="NAME", help="(deprecated) queue name")
        if all_opt:
            sp.add_argument("-a", "--all", action="store_true",
                            help="Force command to apply to all queues if none specified")
            sp.add_argument("--quiet", action="store_true", help="Display only errors")
        if message:
            sp.add_argument("-m", "--message", metavar="REASON", help="Add a reason")
        if name in ("start", "stop"):
            sp.add_argument("--nocheckpoint", action="store_true",
                            help="Do not preserve the new state across an instance restart")
        sp.add_argument("-v", "--verbose", action="store_true", help="Display more detail")
        sp.add_argument("queue", nargs="?", metavar="QUEUE", help="Queue name")
        return sp

    common("status", "Display queue status", all_opt=False)
    common("enable", "Enable job submission")
    common("disable", "Disable job submission", message=True)
    common("start", "Start scheduling")
    common("stop", "Stop scheduling", message=True)
    for name, help_ in (("drain", "Wait for the queue to become empty"),
                        ("idle", "Wait for the queue to become idle")):
        sp = sub.add_parser(name, help=help_, allow_abbrev=False)
        sp.add_argument("--timeout", metavar="DURATION", help="Timeout after DURATION (FSD)")
        if name == "idle":
            sp.add_argument("--quiet", action="store_true", help="Only display pending job count if nonzero")
    sp = sub.add_parser("policy", help="Show or change the scheduler's queue and match policies",
                        allow_abbrev=False)
    sp.add_argument("name", nargs="?", metavar="POLICY",
                    help="Queue policy to use (fcfs, easy, conservative, hybrid, ...)")
    sp.add_argument("-p", "--params", action="append", metavar="KEY=VAL[,...]",
                    help="Queue policy parameters, e.g. queue-depth=64,reservation-depth=8")
    sp.add_argument("-m", "--match-policy", metavar="NAME", help="Match policy to use")
    sp = sub.add_parser("list", help="List queues", allow_abbrev=False)
    sp.add_argument("-q", "--queue", metavar="QUEUE,...", help="Only list these queues")
    sp.add_argument("-n", "--no-header", action="store_true", help="Suppress header")
    sp.add_argument("--ascii", action="store_true", help="Use y/n instead of symbols")
    return p


def _list(h, args) -> None:
    queues = _rpc(h, "job-manager.queue-list", {}, "list").get("queues", [])
    want = set(args.queue.split(",")) if args.queue else None
    if want:
        unknown = want - set(queues)
        if unknown:
            raise QueueError(f"list: unknown queue(s): {','.join(sorted(unknown))}")
    rows = [(q, _status_one(h, q)) for q in queues if not want or q in want] if queues \
        else [(None, _status_one(h, None))]
    yes, no = ("y", "n") if args.ascii else ("✔", "✗")
    named = bool(queues)
    if not args.no_header:
        print(("QUEUE    " if named else "") + "EN ST")
    for name, st in rows:
        col = f"{name:<8.8} " if named else ""
        print(f"{col}{yes if st.get('enable') else no:>2} {yes if st.get('start') else no:>2}")


def run(args) -> int:
    import flux

    h = flux.Flux()
    sub = args.subcommand
    if sub in ("status", "enable", "disable", "start", "stop"):
        queue = args.queue or args.old_queue
        if sub == "status":
            for name, status in queue_statuses(h, queue, args.verbose):
                print_queue_status(name, status)
            if args.verbose:
                info = sched_policy(h)
                if info is not None:
                    print_policy(info)
                alloc_query(h)
            return 0
        if sub in ("enable", "disable"):
            payload: dict = {"enable": sub == "enable", "all": args.all}
            if queue:
                payload["name"] = queue
            if sub == "disable":
                payload["reason"] = args.message or "disabled by administrator"
            _rpc(h, "job-manager.queue-enable", payload, "enable")
            if not args.quiet:
                for name, status in queue_statuses(h, queue, args.verbose):
                    print_enable_status(name, status)
            return 0
        _check_all(h, queue, args.all)
        payload = {"start": sub == "start", "all": args.all, "nocheckpoint": args.nocheckpoint}
        if queue:
            payload["name"] = queue
        if sub == "stop" and args.message:
            payload["reason"] = args.message
        _rpc(h, "job-manager.queue-start", payload, "start")
        if not args.quiet:
            for name, status in queue_statuses(h, queue, args.verbose):
                print_start_status(name, status)
            if args.verbose:
                alloc_query(h)
        return 0
    if sub == "drain":
        _wait(h, "job-manager.drain", "drain", _timeout(args.timeout))
        return 0
    if sub == "idle":
        resp = _wait(h, "job-manager.idle", "idle", _timeout(args.timeout))
        pending = resp.get("pending", 0)
        if not args.quiet or pending > 0:
            print(f"{pending} jobs")
        return 0
    if sub == "list":
        _list(h, args)
        return 0
    if sub == "policy":
        return _policy(h, args)
    raise QueueError(f"unknown subcommand '{sub}'")


def main(argv: list[str]) -> int:
    p = _parser()
    if not argv:
        p.print_usage(sys.stderr)
        return 1
    args = p.parse_args(argv)
    if args.subcommand is None:
        p.print_usage(sys.stderr)
        return 1
    try:
        return run(args)
    except QueueError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"{PROG}: {exc.strerror or exc}\n")
        return 1
