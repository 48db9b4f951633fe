"""`flux submit`, `flux run` and `flux bulksubmit` (SPEC 10.1).

- ``submit`` prints the new job id (F58); ``--cc/--bcc`` make copies of the job,
  sent in batches of ``job-ingest.submit {jobs: [...]}`` requests that are all in
  flight at once, so large ensembles go in at the instance's ingest rate.
- ``run`` submits and then attaches in the same process (no second interpreter), so
  its exit code is the job's, and its output streams as the job runs.
- ``bulksubmit`` submits one job per combination of inputs (``:::``, ``::::``, ``+``
  links, stdin), substituted into ``{}`` placeholders.
"""

from __future__ import annotations

import sys
from collections import deque

from flux.cmd import jobopts

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

BATCH = 512  # jobs per batch request: large enough to amortize, small enough to stream
CC_PLACEHOLDER = "@@FLUX_JOB_CC@@"


class SubmitCmd:
    """Shared machinery: build jobspecs, submit (single, or batched copies), print ids,
    and optionally watch the jobs until their wait event."""

    def __init__(self, prog: str):
        self.prog = prog
        self.h = None
        self.exitcode = 0
        self.watcher = None
        self.progress = None
        self.logfiles: dict[str, Any] = {}
        self.items: list[tuple[Any, bytes | str, int, int, str]] = []  # (xargs, J, urgency, flags, label)
        self.batches: deque = deque()
        self.submitted = 0
        self.t0 = 0.0

    def handle(self):
        if self.h is None:
            import flux

            self.h = flux.Flux()
        return self.h

    def warn(self, msg: str, stream: Any = None) -> None:
        (stream or sys.stderr).write(f"{self.prog}: {msg}\n")

    # ------------------------------------------------------------ helpers
    @staticmethod
    def cc_list(args: Any) -> list:
        if args.cc and args.bcc:
            raise ValueError("specify only one of --cc or --bcc")
        text = args.cc or args.bcc
        if not text:
            return [None]
        from flux.core.util import idset

        try:
            return idset.decode(text)
        except ValueError:
            raise ValueError(f"--{'cc' if args.cc else 'bcc'}={text}: invalid idset") from None

    def openlog(self, filename: str):
        if filename not in self.logfiles:
            self.logfiles[filename] = open(filename, "w", buffering=1)  # noqa: SIM115
        return self.logfiles[filename]

    def _streams(self, xargs: Any) -> None:
        xargs.stdout, xargs.stderr = sys.stdout, sys.stderr
        if getattr(xargs, "log", None):
            xargs.stdout = xargs.stderr = self.openlog(xargs.log)
        if getattr(xargs, "log_stderr", None):
            xargs.stderr = self.openlog(xargs.log_stderr)

    @staticmethod
    def submit_params(args: Any) -> tuple[int, int]:
        from flux.job.submit import _flags

        urgency = jobopts.parse_urgency(args.urgency)
        fl = jobopts.parse_flags(args.flags)
        return urgency, _flags(fl["waitable"], fl["debug"], fl["novalidate"])

    # ------------------------------------------------------------ queueing
    def add_jobs(self, args: Any, jobspec_create=jobopts.jobspec_create) -> None:
        """Queue one job (or one per --cc/--bcc id) built from `args`."""
        from flux.job.submit import _jobspec_bytes, _userid, sign_jobspec

        cclist = self.cc_list(args)
        copies = cclist != [None]
        if args.dry_run:
            xargs = jobopts.Xcmd(args, cc=cclist[0]) if copies else args
            js = jobspec_create(xargs)
            if copies and not args.bcc:
                js.environment["FLUX_JOB_CC"] = str(cclist[0])
            print(js.dumps())
            raise SystemExit(0)
        if getattr(args, "input", None) and jobopts._is_idset(args.input):
            raise ValueError("per-task input not supported for submit")
        h = self.handle()
        uid = _userid(h)
        if not copies or jobopts.needs_substitution(args):
            for cc in cclist:
                xargs = jobopts.Xcmd(args, cc=cc) if copies else args
                js = jobspec_create(xargs)
                if copies and not args.bcc:
                    js.environment["FLUX_JOB_CC"] = str(cc)
                urgency, flags = self.submit_params(xargs)
                self._streams(xargs)
                self.items.append((xargs, sign_jobspec(h, _jobspec_bytes(js), uid), urgency, flags,
                                   f"cc={cc}: " if copies else ""))
            return
        # copies differing only in FLUX_JOB_CC: encode the jobspec once
        js = jobspec_create(args)
        urgency, flags = self.submit_params(args)
        self._streams(args)
        if args.bcc:
            J = sign_jobspec(h, js.dumps().encode(), uid)
            self.items.extend((args, J, urgency, flags, f"cc={cc}: ") for cc in cclist)
            return
        js.environment["FLUX_JOB_CC"] = CC_PLACEHOLDER
        text = js.dumps().encode()
        if text.count(CC_PLACEHOLDER.encode()) != 1:
            raise ValueError(f"jobspec must not contain '{CC_PLACEHOLDER}'")
        head, _, tail = text.partition(CC_PLACEHOLDER.encode())
        for cc in cclist:
            J = sign_jobspec(h, head + str(cc).encode() + tail, uid)
            self.items.append((args, J, urgency, flags, f"cc={cc}: "))

    # ------------------------------------------------------------ sending
    def send(self, args: Any) -> None:
        """Submit every queued job; ids are printed in submission order."""
        import time

        from flux.job.submit import SubmitFuture, _batch_rpc

        h = self.handle()
        self.t0 = time.monotonic()
        if args.watch or args.wait:
            self.watcher_start(args)
        elif args.progress:
            self.progress_start(args, len(self.items))
        items, self.items = self.items, []
        if len(items) == 1:
            xargs, J, urgency, flags, label = items[0]
            fut = h.rpc("job-ingest.submit", {"J": J, "urgency": urgency, "flags": flags})
            fut.__class__ = SubmitFuture
            self.batches.append((fut, items, True))
            fut.then(self._batch_cb)
            return
        for i in range(0, len(items), BATCH):
            chunk = items[i:i + BATCH]
            fut = _batch_rpc(h, [{"J": J, "urgency": u, "flags": f} for _x, J, u, f, _l in chunk])
            self.batches.append((fut, chunk, False))
            fut.then(self._batch_cb)

    def _batch_cb(self, _f) -> None:
        # report completed batches strictly in order
        while self.batches and self.batches[0][0].is_ready():
            fut, chunk, single = self.batches.popleft()
            if single:
                try:
                    results: list = [fut.get_id()]
                except OSError as exc:
                    results = [exc]
            else:
                try:
                    results = fut.get_ids()
                except OSError as exc:
                    results = [exc] * len(chunk)
            for (xargs, _J, _u, _f2, label), res in zip(chunk, results, strict=False):
                self._submitted(xargs, label, res)
        if not self.batches and self.progress is not None:
            self.progress.finish()
            self.progress = None

    def _submitted(self, xargs: Any, label: str, res: Any) -> None:
        self.submitted += 1
        bar = self.progress or (self.watcher.bar if self.watcher is not None else None)
        if bar is not None:  # clear the bar; it is redrawn below the new line
            bar.stream.write("\r\033[K")
        if isinstance(res, OSError):
            msg = res.strerror or str(res)
            xargs.stderr.write(f"{self.prog}: {label}{msg}\n")
            self.exitcode = 1
            if self.progress is not None:
                self.progress.fields["fail"] = self.progress.fields.get("fail", 0) + 1
                self.progress.update()
            return
        if not xargs.quiet:
            xargs.stdout.write(f"{res}\n")
        if self.watcher is not None:
            self.watcher.add_jobid(res, xargs.stdout, xargs.stderr, xargs.wait)
        elif self.progress is not None:
            self.progress.update()

    # ---------------------------------------------------------- progress
    def _progress_ok(self, args: Any) -> bool:
        if args.progress and not sys.stdout.isatty():
            self.warn("stdout is not a tty. Ignoring --progress option")
            args.progress = False
        return bool(args.progress)

    def progress_start(self, args: Any, total: int) -> None:
        if not self._progress_ok(args) or self.progress is not None:
            return
        after = "{percent:5.1f}% {jps:4.1f} job/s" if args.jps else "{percent:5.1f}% {elapsed:.1f}s"
        self.progress = jobopts.ProgressBar(total, before=f"Submitting {total} jobs: ", after=after)
        self.progress.redraw()

    def watcher_start(self, args: Any) -> None:
        if self.watcher is not None:
            return
        from flux.cmd.watch import JobWatcher

        self.watcher = JobWatcher(self.handle(), progress=self._progress_ok(args), jps=args.jps,
                                  wait=args.wait or "clean", watch=args.watch,
                                  log_events=args.verbose > 1, log_status=args.verbose > 0,
                                  labelio=args.label_io).start()

    def run(self, args: Any) -> int:
        """Send everything queued, run until all answers (and watched jobs) are in."""
        import time

        self.send(args)
        self.h.reactor_run()
        if self.watcher is not None:
            self.watcher.stop()
            self.exitcode = max(self.exitcode, self.watcher.exitcode)
        if args.jps and not args.progress and self.submitted:
            dt = max(time.monotonic() - self.t0, 1e-9)
            sys.stderr.write(f"{self.prog}: {self.submitted} jobs in {dt:.3f}s: "
                             f"{self.submitted / dt:.1f} job/s\n")
        sys.stdout.flush()
        for fp in self.logfiles.values():
            fp.close()
        return self.exitcode


# ----------------------------------------------------------------- parsers


def submit_parser(prog: str = "flux submit"):
    p = jobopts.make_parser(prog, description="Submit a job to a Flux instance")
    jobopts.add_common_options(p)
    jobopts.add_resource_options(p)
    jobopts.add_bulk_options(p)
    import argparse

    p.add_argument("command", nargs=argparse.REMAINDER, help="Job command and arguments")
    return p


def run_parser(prog: str = "flux run"):
    import argparse

    p = jobopts.make_parser(prog, description="Run a job interactively in a Flux instance")
    jobopts.add_common_options(p)
    jobopts.add_resource_options(p)
    p.add_argument("--wait-event", metavar="NAME",
                   help="Wait for event NAME before detaching from the job eventlog")
    p.add_argument("command", nargs=argparse.REMAINDER, help="Job command and arguments")
    return p


def bulksubmit_parser(prog: str = "flux bulksubmit"):
    import argparse

    p = jobopts.make_parser(prog, usage=f"{prog} [OPTIONS...] COMMAND [ARGS...]",
                            description="Submit one job per set of inputs (stdin or ::: lists)")
    jobopts.add_common_options(p)
    jobopts.add_resource_options(p)
    jobopts.add_bulk_options(p)
    p.add_argument("--shuffle", action="store_true", help="Shuffle list of commands before submission")
    p.add_argument("--sep", default="\n", metavar="STRING",
                   help="Set the input argument separator (default newline; none: whitespace)")
    p.add_argument("--define", action="append", dest="methods", default=[], metavar="NAME=CODE",
                   help="Define a named method for transforming any input, used as '{0.NAME}' "
                        "(local variable 'x' holds the input string)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="Job command and initial arguments")
    return p


def _guard(prog: str, fn, *args) -> int:
    try:
        return fn(*args)
    except (ValueError, TypeError) as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"{prog}: {exc.strerror or exc}\n")
        return 1


# ------------------------------------------------------------------ submit


def _submit(argv: list[str]) -> int:
    args = jobopts.parse_posix(submit_parser(), argv)
    cmd = SubmitCmd("flux-submit")
    cmd.add_jobs(args)
    return cmd.run(args)


def submit_main(argv: list[str]) -> int:
    return _guard("flux-submit", _submit, argv)


# --------------------------------------------------------------------- run


def _run(argv: list[str]) -> int:
    args = jobopts.parse_posix(run_parser(), argv)
    js = jobopts.jobspec_create(args)
    if args.dry_run:
        print(js.dumps())
        return 0
    stdin_ranks = "all"
    if args.input and jobopts._is_idset(args.input):
        stdin_ranks = args.input
    import flux
    from flux.job.submit import submit_async

    fl = jobopts.parse_flags(args.flags)
    h = flux.Flux()
    jobid = submit_async(h, js, urgency=jobopts.parse_urgency(args.urgency),
                         waitable=fl["waitable"], debug=fl["debug"],
                         novalidate=fl["novalidate"]).get_id()
    if args.verbose > 0:
        sys.stderr.write(f"jobid: {jobid}\n")
        sys.stderr.flush()
    from flux.cmd.job import attach

    return attach(h, jobid, label_io=args.label_io, show_events=args.verbose > 1,
                  show_exec=args.verbose > 2, wait_event=args.wait_event or "clean",
                  unbuffered=args.unbuffered, stdin_ranks=stdin_ranks)


def run_main(argv: list[str]) -> int:
    return _guard("flux-run", _run, argv)


# -------------------------------------------------------------- bulksubmit


def _split_before(items: list[str], pred) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for item in items:
        if pred(item):
            out.append([])
        out[-1].append(item)
    return out


def _input_file(fp, sep: str | None) -> list[str]:
    return [x for x in fp.read().split(sep) if x]


def split_command_inputs(command: list[str], sep: str | None, delim: str = ":::"):
    """(command template, input lists, linked inputs) from ``cmd ::: a b :::+ c``."""
    command, *input_lists = _split_before(command, lambda x: x.startswith(delim))
    links = []
    for i, lst in enumerate(input_lists):
        first = lst.pop(0)
        if first not in (delim, delim + ":", delim + "+", delim + ":+"):
            raise ValueError(f"invalid input separator '{first}'")
        if first in (delim + ":", delim + ":+"):
            if len(lst) != 1:
                raise ValueError(f"{first} takes exactly one file argument")
            if lst[0] == "-":
                lst[:] = _input_file(sys.stdin, sep)
            else:
                try:
                    with open(lst[0]) as fp:
                        lst[:] = _input_file(fp, sep)
                except OSError as exc:
                    raise ValueError(f"{lst[0]}: {exc.strerror}") from None
        if first.endswith("+"):
            if i == 0:
                raise ValueError(f"{first} must follow another input list")
            links.append((i, list(lst)))
            lst.clear()
    return command, [lst for lst in input_lists if lst], links


def create_commands(args: Any) -> list:
    import itertools

    sep: str | None = bytes(args.sep, "utf-8").decode("unicode_escape")
    if sep.lower() == "none":
        sep = None
    methods = {}
    for item in args.methods or []:
        name, eq, code = item.partition("=")
        if not eq or not name:
            raise ValueError(f"--define: expected NAME=CODE, got '{item}'")
        try:
            methods[name] = compile(code, name, "eval")
        except SyntaxError as exc:
            raise ValueError(f"--define={item}: {exc.msg}") from None
    args.methods = methods
    args.command, input_lists, links = split_command_inputs(args.command, sep)
    if not args.command:
        args.command = ["{}"]
    if not input_lists:
        input_lists = [_input_file(sys.stdin, sep)]
    inputs = [list(x) for x in itertools.product(*input_lists)]
    for index, values in links:
        cycle = itertools.cycle(values)
        for lst in inputs:
            lst.insert(index, next(cycle))
    return [jobopts.Xcmd(args, inp, seq=i, seq1=i + 1, cc="{cc}") for i, inp in enumerate(inputs)]


def _bulksubmit(argv: list[str]) -> int:
    args = jobopts.parse_posix(bulksubmit_parser(), argv)
    if not args.command:
        args.command = ["{}"]
    commands = create_commands(args)
    if args.shuffle:
        import random

        random.shuffle(commands)
    cmd = SubmitCmd("flux-bulksubmit")
    total = sum(len(cmd.cc_list(x)) for x in commands)
    if total == 0:
        raise ValueError("no jobs provided for bulk submission")
    if args.progress and args.dry_run:
        print(f"bulksubmit: submitting a total of {total} jobs")
    for xargs in commands:
        if args.verbose or args.dry_run:
            print(f"bulksubmit: submit {xargs}")
        if not args.dry_run:
            cmd.add_jobs(xargs)
    if args.dry_run:
        return 0
    return cmd.run(args)


def bulksubmit_main(argv: list[str]) -> int:
    return _guard("flux-bulksubmit", _bulksubmit, argv)


main = submit_main

if __name__ == "__main__":
    sys.exit(submit_main(sys.argv[1:]))
