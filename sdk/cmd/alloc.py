"""`flux alloc`: start a child instance on new resources and attach to it (SPEC 10.1).

With COMMAND, the child runs it as its initial program and `flux alloc` exits with
its exit code (carried through the job's exit status). Without one, the child runs
an interactive shell: stdin being a terminal asks the job shell for an interactive
pty (`pty.interactive`) that `flux alloc` then drives. With `--bg` nothing is
attached: the command waits until the child has recorded its URI and finished
starting (`state-machine.wait`), prints the job id and exits, leaving the instance
running (no initial program unless COMMAND is given).
"""

from __future__ import annotations

import argparse
import sys
import time

from flux.cmd import jobopts, nestopts

PROG = "flux-alloc"


def build_parser():
    p = jobopts.make_parser("flux alloc", description="Allocate resources and start a new "
                                                      "Flux instance on them")
    jobopts.add_common_options(p, exclude_io=True)
    nestopts.add_batch_alloc_options(p)
    p.add_argument("--bg", action="store_true",
                   help="Wait for the new instance to start, but do not attach to it")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="Initial program of the new instance (default: an interactive shell)")
    return p


def init_jobspec(args):
    from flux.job.jobspec import JobspecV1

    kw = nestopts.slots(args)
    if args.bg and not args.command:
        kw["broker_opts"].append("-Sbroker.rc2_none=1")
    try:
        js = JobspecV1.from_nest_command(args.command, environment={}, **kw)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if args.bg:
        # output is kept, but no client will drive a terminal
        js.setattr_shell_option("pty.capture", 1)
    elif sys.stdin.isatty():
        js.setattr_shell_option("pty.interactive", 1)
    return js


def _log(jobid, t0: float, text: str) -> None:
    sys.stderr.write(f"{jobid}: {time.time() - t0:6.3f}s: {text}\n")
    sys.stderr.flush()


def wait_ready(h, jobid, verbose: int = 0) -> str:
    """Wait for the child's `uri` memo, then for the child to be up; its URI."""
    import flux
    from flux.job.event import event_watch
    from flux.uri import JobURI

    t0 = time.time()
    if verbose:
        _log(jobid, t0, "waiting for resources")
    for ev in event_watch(h, jobid):
        if ev.name == "alloc" and verbose:
            _log(jobid, t0, "resources allocated")
        elif ev.name == "memo" and "uri" in ev.context:
            if verbose:
                _log(jobid, t0, "waiting for instance")
            uri = str(JobURI(ev.context["uri"]))
            try:
                child = flux.Flux(uri)
            except OSError as exc:
                raise OSError(f"Unable to connect to {jobid}: {exc.strerror or exc}") from None
            try:
                child.rpc("state-machine.wait").get()
            except OSError:
                raise OSError(f"{jobid}: instance startup failed") from None
            finally:
                child.close()
            if verbose:
                _log(jobid, t0, "ready")
            return uri
        elif ev.name in ("finish", "clean"):
            break
    from flux.cmd.job import attach

    saved = sys.stdout
    sys.stdout = sys.stderr  # what the job printed explains why it ended
    try:
        attach(h, jobid, readonly=True)
    finally:
        sys.stdout = saved
    raise OSError(f"{jobid}: unexpectedly exited")


def _main(argv: list[str]) -> int:
    args = jobopts.parse_posix(build_parser(), argv)
    js = jobopts.jobspec_create(args, init=init_jobspec)
    if args.dry_run:
        print(js.dumps())
        return 0
    h, jobid = nestopts.submit(args, js)
    if args.bg:
        try:
            wait_ready(h, jobid, args.verbose)
        except KeyboardInterrupt:
            sys.stderr.write(f"\r{jobid}: Interrupt: canceling job\n")
            from flux.job.kill import cancel

            cancel(h, jobid)
            return 1
        print(jobid)
        return 0
    if args.verbose > 0:
        sys.stderr.write(f"jobid: {jobid}\n")
        sys.stderr.flush()
    from flux.cmd.job import attach

    return attach(h, jobid, show_events=args.verbose > 1, show_exec=args.verbose > 2,
                  unbuffered=args.unbuffered, pty=sys.stdin.isatty())


def main(argv: list[str]) -> int:
    return nestopts.guard(PROG, _main, argv)
