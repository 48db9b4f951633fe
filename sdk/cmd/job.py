"""`flux job`: attach, wait, status, info, eventlog, wait-event, kill, killall, raise,
raiseall, urgency, id, last, purge, taskmap (SPEC 10.3).

``attach`` is also what ``flux run`` does after submitting, in the same process, so
this module imports only what attaching needs; each other subcommand imports its own
dependencies and builds its own parser.
"""

from __future__ import annotations

import errno
import os
import sys

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

PROG = "flux-job"
FLUX_JOBID_ANY = 0xFFFFFFFFFFFFFFFF
_LEVELS = ["FATAL", "FATAL", "FATAL", "ERROR", " WARN", None, "DEBUG", "TRACE"]
_FWD_SIGNALS = ("SIGTERM", "SIGHUP", "SIGALRM", "SIGUSR1", "SIGUSR2")


class CmdError(Exception):
    """Ends a subcommand: message on stderr as ``flux-job: message``, exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def log(msg: str) -> None:
    sys.stderr.write(f"{PROG}: {msg}\n")
    sys.stderr.flush()


def parse_jobid(text: str):
    from flux.job.JobID import JobID

    try:
        return JobID(text)
    except (OSError, ValueError, TypeError):
        raise CmdError(f"error parsing jobid: '{text}'") from None


def waitstatus_to_exitcode(status: int) -> tuple[int, str]:
    """(exit code, message) of a `finish` wait status, as flux-core reports it."""
    import signal

    def signame(n: int) -> str:
        try:
            return signal.strsignal(n) or f"signal {n}"
        except ValueError:
            return f"signal {n}"

    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, f"job shell {signame(sig)}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
    if code > 128:
        return code, f"task(s) {signame(code - 128)}"
    if code > 0:
        return code, f"task(s) exited with exit code {code}"
    return 0, ""


# --------------------------------------------------------------- job output


class OutputPrinter:
    """Prints RFC 24 output-eventlog entries: data to stdout/stderr (``rank: ``
    prefixed with label_io), redirects and shell log messages to stderr."""

    def __init__(self, label_io: bool = False, quiet: bool = False, verbose: int = 0,
                 t0: Any = None, prefix: str = ""):
        self.label_io = label_io
        self.quiet = quiet
        self.verbose = verbose
        self.t0 = t0 or (lambda: 0.0)
        self.prefix = prefix
        self.header = False
        self.out = sys.stdout.buffer
        self.err = sys.stderr.buffer

    def event(self, ev) -> None:
        name, ctx = ev.name, ev.context
        if name == "header":
            self.header = True
        elif name == "data":
            self._data(ctx)
        elif name == "redirect":
            if not self.quiet:
                path = ctx.get("path")
                dest = f" to {path}" if path else ""
                sys.stderr.write(f"{ctx.get('rank')}: {ctx.get('stream')} redirected{dest}\n")
                sys.stderr.flush()
        elif name == "log":
            self._log(ev.timestamp, ctx)

    def _data(self, ctx: dict) -> None:
        data = ctx.get("data")
        if not data:
            return
        if ctx.get("encoding") == "base64":
            import base64

            raw = base64.b64decode(data)
        else:
            raw = data.encode("utf-8", errors="surrogateescape")
        repeat = ctx.get("repeat")
        if isinstance(repeat, int) and repeat > 1:
            raw = raw * repeat
        fp = self.out if ctx.get("stream") == "stdout" else self.err
        if self.label_io or self.prefix:
            label = f"{self.prefix}{ctx.get('rank')}: " if self.label_io else self.prefix
            lines = raw.splitlines(keepends=True)
            raw = b"".join(label.encode() + ln for ln in lines)
        fp.write(raw)
        fp.flush()

    def _log(self, ts: float, ctx: dict) -> None:
        if self.quiet:
            return
        level = ctx.get("level", 3)
        label = _LEVELS[level] if isinstance(level, int) and 0 <= level < len(_LEVELS) else None
        parts = [f"{ts - self.t0():.3f}s: flux-shell"]
        if isinstance(ctx.get("rank"), int) and ctx["rank"] >= 0:
            parts[0] += f"[{ctx['rank']}]"
        if label:
            parts.append(label)
        if ctx.get("component"):
            parts.append(ctx["component"])
        if self.verbose and ctx.get("file"):
            loc = ctx["file"] + (f":{ctx['line']}" if ctx.get("line", 0) > 0 else "")
            parts.append(loc)
        parts.append(str(ctx.get("message", "")))
        sys.stderr.write(": ".join(parts) + "\n")
        sys.stderr.flush()


# -------------------------------------------------------------------- attach


class Attach:
    """Follow a job: its eventlog (exit code, exceptions), exec eventlog (shell
    service, exec log) and output eventlog (printed as it is written); forward stdin
    and signals.  :meth:`run` returns the job's exit code (SPEC 10.1)."""

    def __init__(self, h, jobid, label_io: bool = False, show_events: bool = False,
                 show_exec: bool = False, wait_event: str = "clean", readonly: bool = False,
                 unbuffered: bool = False, stdin_ranks: str = "all", quiet: bool = False,
                 verbose: int = 0, show_status: bool = False, pty: bool = False):
        self.h = h
        # drive the job's pty (`pty.interactive`) from our terminal: raw mode, every
        # byte forwarded, window size sent to the shell
        self.pty = pty and not readonly and os.isatty(0)
        self.saved_tty = None
        self.id = jobid
        self.jobid = str(jobid)
        self.show_events = show_events
        self.show_exec = show_exec
        self.wait_event = wait_event or "clean"
        self.readonly = readonly
        self.unbuffered = unbuffered
        self.stdin_ranks = stdin_ranks
        self.quiet = quiet
        self.exit_code = 1
        self.fatal_exception = False
        self.t0 = 0.0
        self.watch_count = 0
        self.eventlog_f = self.exec_f = self.output_f = None
        self.output_started = False
        self.service: str | None = None
        self.leader_rank = 0
        self.stdin_w = None
        self.stdin_sent = False
        self.sig_w = None
        self.sig_fds: tuple[int, int] | None = None
        self.old_handlers: dict = {}
        self.pending_sigs: list[int] = []
        self.t_sigint = -100.0
        self.status_timer = None
        self.statusline = False
        self.status_msg = "submitted"
        self.show_status = show_status
        self.printer = OutputPrinter(label_io, quiet, verbose, t0=lambda: self.t0)

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        from flux.job.event import event_watch_async

        self.eventlog_f = event_watch_async(self.h, self.id).then(self._eventlog_cb)
        self.watch_count = 1
        if not self.readonly:
            self._signals_start()
        if self.pty:
            import termios
            import tty

            self.saved_tty = termios.tcgetattr(0)
            tty.setraw(0)
        else:
            self._statusline_start()
        try:
            self.h.reactor_run()
        finally:
            self._signals_stop()
            self._restore_tty()
            if self.statusline:
                sys.stderr.write("\n")
        if self.fatal_exception and self.exit_code == 0:
            self.exit_code = 1
        return self.exit_code

    def _done_one(self) -> None:
        self.watch_count -= 1
        if self.watch_count <= 0:
            for w in (self.stdin_w, self.sig_w, self.status_timer):
                if w is not None:
                    w.stop()

    # ---------------------------------------------------------- eventlog
    def _eventlog_cb(self, f) -> None:
        try:
            ev = f.get_event()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise CmdError(f"Failed to attach to {self.jobid}: No such job") from None
            if exc.errno == errno.EPERM:
                raise CmdError(f"Failed to attach to {self.jobid}: that is not your job") from None
            raise CmdError(f"flux_job_event_watch_get: {exc.strerror}") from None
        if ev is None:
            self.eventlog_f = None
            self._done_one()
            return
        if not self.t0:
            self.t0 = ev.timestamp
        name, ctx = ev.name, ev.context
        if name == "exception":
            if self.statusline:
                sys.stderr.write("\r\033[K")
            sys.stderr.write(f"{ev.timestamp - self.t0:.3f}s: job.exception {self.jobid} "
                             f"type={ctx.get('type')} severity={ctx.get('severity')} "
                             f"{ctx.get('note', '')}\n")
            sys.stderr.flush()
            if ctx.get("severity") == 0:
                self.fatal_exception = True
        elif name == "submit":
            from flux.job.event import event_watch_async

            self.exec_f = event_watch_async(self.h, self.id, "guest.exec.eventlog").then(self._exec_cb)
            self.watch_count += 1
        elif name == "finish":
            self._restore_tty()  # the job's terminal is gone: messages are ours again
            self.exit_code, msg = waitstatus_to_exitcode(ctx.get("status", 0))
            if self.exit_code != 0:
                log(msg)
        if self.show_events and name != "exception":
            self._print_event("job", ev)
        self._notify(ev)
        if name == self.wait_event:
            f.cancel(stop=True)  # events already received after this one are not shown
            self.eventlog_f = None
            self._done_one()

    def _print_event(self, prefix: str, ev) -> None:
        ctx = ev.context_string
        sys.stderr.write(f"{ev.timestamp - self.t0:.3f}s: {prefix}.{ev.name}{' ' if ctx else ''}{ctx}\n")
        sys.stderr.flush()

    # ----------------------------------------------------- exec eventlog
    def _exec_cb(self, f) -> None:
        try:
            ev = f.get_event()
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # no shell ran (e.g. test exec): nothing to follow
                ev = None
            else:
                raise CmdError(f"flux_job_event_watch_get: {exc.strerror}") from None
        if ev is None:
            self.exec_f = None
            self._done_one()
            return
        name, ctx = ev.name, ev.context
        if name == "shell.init":
            self.leader_rank = ctx.get("leader-rank", 0)
            self.service = ctx.get("service")
            self._output_start()
            self._stdin_start()
            if self.pty:
                self._pty_resize()
        elif name == "shell.start":
            self._stdin_ranks(ctx)
        elif name == "log":
            if not self.quiet:
                sys.stderr.write(f"{ev.timestamp - self.t0:.3f}s: {ctx.get('component')}"
                                 f"[{ctx.get('rank')}]: {ctx.get('stream')}: ")
            sys.stderr.write(str(ctx.get("data", "")))
            sys.stderr.flush()
        if name == "complete":
            self._output_start()
        if self.show_exec and name != "log":
            self._print_event("exec", ev)

    # ------------------------------------------------------------ output
    def _output_start(self) -> None:
        if self.output_started:
            return
        from flux.job.event import event_watch_async

        self.output_started = True
        self.output_f = event_watch_async(self.h, self.id, "guest.output").then(self._output_cb)
        self.watch_count += 1

    def _output_cb(self, f) -> None:
        try:
            ev = f.get_event()
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise CmdError(f"flux_job_event_watch_get: {exc.strerror}") from None
            ev = None
        if ev is None:
            self.output_f = None
            self._done_one()
            return
        self.printer.event(ev)

    def _restore_tty(self) -> None:
        if self.saved_tty is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved_tty)
            self.saved_tty = None

    def _pty_resize(self) -> None:
        """Tell the job's pty our window size (at start and on SIGWINCH)."""
        if self.service is None:
            return
        try:
            cols, rows = os.get_terminal_size(0)
        except OSError:
            return
        self.h.rpc(f"{self.service}.pty-resize", {"rows": rows, "cols": cols},
                   nodeid=self.leader_rank).then(lambda f: None)

    # ------------------------------------------------------------- stdin
    def _stdin_start(self) -> None:
        if self.readonly or self.service is None or self.stdin_w is not None:
            return
        try:
            os.fstat(0)
        except OSError:
            return  # stdin is closed
        self.stdin_w = self.h.fd_watcher_create(0, self._stdin_cb)
        if self.stdin_ranks == "all":
            self._stdin_watch()

    def _stdin_watch(self) -> None:
        try:
            self.stdin_w.start()
        except PermissionError:
            # epoll refuses regular files and /dev/null: they are always readable,
            # so send their whole content now
            self.stdin_w.active = False
            self.h._watchers.discard(self.stdin_w)
            self.stdin_w = None
            while True:
                try:
                    data = os.read(0, 1 << 20)
                except OSError:
                    data = b""
                if not data:
                    self._send_stdin(self.stdin_ranks, b"", eof=True)
                    return
                self.stdin_sent = True
                self._send_stdin(self.stdin_ranks, data, eof=False)

    def _stdin_ranks(self, ctx: dict) -> None:
        """Close stdin on the ranks not selected by --stdin-ranks, then start reading."""
        if self.stdin_ranks == "all" or self.stdin_w is None:
            return
        from flux.core.job.taskmap import TaskMap
        from flux.core.util import idset

        try:
            ntasks = TaskMap.decode(ctx["taskmap"]).total_ntasks
        except (KeyError, ValueError):
            log("failed to process taskmap in shell.start event")
            return
        want = set(idset.decode(self.stdin_ranks))
        ok = {r for r in want if r < ntasks}
        if ok != want:
            new = idset.encode(sorted(ok))
            log(f"warning: adjusting --stdin-ranks from {self.stdin_ranks} to {new}")
            self.stdin_ranks = new
        close = [r for r in range(ntasks) if r not in ok]
        if close:
            self._send_stdin(idset.encode(close), b"", eof=True)
        self._stdin_watch()

    def _send_stdin(self, ranks: str, data: bytes, eof: bool) -> None:
        ctx: dict[str, Any] = {"stream": "stdin", "rank": ranks}
        if data:
            try:
                ctx["data"] = data.decode("utf-8")
            except UnicodeDecodeError:
                import base64

                ctx["data"] = base64.b64encode(data).decode()
                ctx["encoding"] = "base64"
        if eof:
            ctx["eof"] = True
        f = self.h.rpc(f"{self.service}.stdin", ctx, nodeid=self.leader_rank)
        f.then(self._stdin_sent_cb)

    def _stdin_sent_cb(self, f) -> None:
        # A refusal matters only if the user actually typed something: the shell may be
        # gone already, or take its input from a file (--input=FILE).
        try:
            f.get()
        except OSError:
            if self.stdin_sent and self.watch_count > 0:
                raise CmdError("stdin not accepted by job") from None

    def _stdin_cb(self, h, w, fd, revents, args) -> None:
        try:
            data = os.read(0, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.stdin_sent = True
            self._send_stdin(self.stdin_ranks, data, eof=False)
        else:
            self._send_stdin(self.stdin_ranks, b"", eof=True)
            w.stop()

    # ----------------------------------------------------------- signals
    def _signals_start(self) -> None:
        import signal

        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        self.sig_fds = (rfd, wfd)

        def handler(signum, frame):
            self.pending_sigs.append(signum)
            try:
                os.write(wfd, b"s")
            except OSError:
                pass

        for name in ("SIGINT", *_FWD_SIGNALS, *(("SIGWINCH",) if self.pty else ())):
            try:
                self.old_handlers[name] = signal.signal(getattr(signal, name), handler)
            except (OSError, ValueError):
                pass
        self.sig_w = self.h.fd_watcher_create(rfd, self._signal_cb).start()

    def _signals_stop(self) -> None:
        import signal

        for name, old in self.old_handlers.items():
            try:
                signal.signal(getattr(signal, name), old)
            except (OSError, ValueError, TypeError):
                pass
        self.old_handlers.clear()
        if self.sig_w is not None:
            self.sig_w.stop()
        if self.sig_fds:
            for fd in self.sig_fds:
                os.close(fd)
            self.sig_fds = None

    def _signal_cb(self, h, w, fd, revents, args) -> None:
        import signal
        import time

        try:
            os.read(fd, 4096)
        except OSError:
            pass
        sigs, self.pending_sigs = self.pending_sigs, []
        for signum in sigs:
            if signum == signal.SIGWINCH:
                self._pty_resize()
            elif signum == signal.SIGINT:
                now = time.monotonic()
                if now - self.t_sigint > 2.0:
                    self.t_sigint = now
                    self._arm_detach()
                    log("one more ctrl-C within 2s to cancel or ctrl-Z to detach")
                else:
                    from flux.job.kill import cancel_async

                    cancel_async(self.h, self.id, "interrupted by ctrl-C").then(
                        self._report_cb, "cancel")
            elif signum == getattr(signal, "SIGTSTP", -1):
                if time.monotonic() - self.t_sigint <= 2.0:
                    for fut in (self.eventlog_f, self.exec_f, self.output_f):
                        if fut is not None:
                            fut.cancel()
                    log("detaching...")
                else:
                    signal.signal(signal.SIGTSTP, self.old_handlers.pop("SIGTSTP", signal.SIG_DFL))
                    log("one more ctrl-Z to suspend")
            else:
                from flux.job.kill import kill_async

                kill_async(self.h, self.id, signum).then(self._report_cb, "kill")

    def _arm_detach(self) -> None:
        import signal

        if "SIGTSTP" in self.old_handlers or self.sig_fds is None:
            return
        wfd = self.sig_fds[1]

        def handler(signum, frame):
            self.pending_sigs.append(signum)
            try:
                os.write(wfd, b"s")
            except OSError:
                pass

        self.old_handlers["SIGTSTP"] = signal.signal(signal.SIGTSTP, handler)

    @staticmethod
    def _report_cb(f, what: str) -> None:
        try:
            f.get()
        except OSError as exc:
            log(f"{what}: {exc.strerror}")

    # --------------------------------------------------------- statusline
    def _statusline_start(self) -> None:
        if os.environ.get("FLUX_ATTACH_NONINTERACTIVE"):
            return
        if not self.show_status and (self.show_events or not all(
                os.isatty(fd) for fd in (0, 1, 2))):
            return
        self.status_timer = self.h.timer_watcher_create(0.0 if self.show_status else 2.0,
                                                        self._status_cb, repeat=1.0).start()

    def _status_cb(self, h, w, revents, args) -> None:
        import time

        self.statusline = True
        self._draw_status(time.time())

    def _draw_status(self, now: float) -> None:
        if self.fatal_exception or not self.statusline:
            return
        import shutil

        dt = int(now - self.t0) if self.t0 else 0
        width = shutil.get_terminal_size((80, 24)).columns - 10 - len(self.jobid) - 10
        sys.stderr.write(f"\rflux-job: {self.jobid} {self.status_msg:<{max(width, 1)}} "
                         f"{dt // 3600:02d}:{dt // 60 % 60:02d}:{dt % 60:02d}\r")
        sys.stderr.flush()

    _STATUS = {"submit": "submitted", "validate": "resolving dependencies",
               "depend": "waiting for priority assignment", "priority": "waiting for resources",
               "alloc": "starting", "prolog-start": "waiting for prolog",
               "prolog-finish": "starting", "start": "started"}

    def _notify(self, ev) -> None:
        msg = self._STATUS.get(ev.name)
        if ev.name == "exception" and ev.context.get("severity") == 0:
            msg = "canceling due to exception"
        if msg:
            self.status_msg = msg
        self._draw_status(ev.timestamp)
        if ev.name in ("start", "clean"):
            if self.statusline:
                sys.stderr.write("\n")
                self.statusline = False
            if self.status_timer is not None:
                self.status_timer.stop()


def attach(h, jobid, **kw: Any) -> int:
    """Attach to a job until it ends (or its wait event); returns its exit code."""
    a = Attach(h, jobid, **kw)
    try:
        return a.run()
    except CmdError as exc:
        log(str(exc))
        return exc.code


# -------------------------------------------------------------- subcommands


def _parser(name: str, usage: str | None = None, description: str | None = None):
    from flux.cmd.util import Parser

    return Parser(f"flux job {name}", usage=usage, description=description)


def _handle():
    import flux

    return flux.Flux()


def cmd_attach(argv: list[str]) -> int:
    p = _parser("attach", description="Interactively attach to a job")
    p.add_argument("-E", "--show-events", action="store_true", help="Show job events on stderr")
    p.add_argument("-X", "--show-exec", action="store_true", help="Show exec events on stderr")
    p.add_argument("--show-status", action="store_true", help="Show job status line while pending")
    p.add_argument("-w", "--wait-event", metavar="NAME", default="clean",
                   help="Wait for event NAME before detaching from eventlog (default=clean)")
    p.add_argument("-l", "--label-io", action="store_true", help="Label output by rank")
    p.add_argument("-v", "--verbose", action="count", default=0, help="Increase verbosity")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress warnings written to stderr")
    p.add_argument("-r", "--read-only", action="store_true",
                   help="Disable reading stdin and capturing signals")
    p.add_argument("-u", "--unbuffered", action="store_true", help="Disable buffering of stdin")
    p.add_argument("-i", "--stdin-ranks", metavar="RANKS", default="all",
                   help="Send standard input to only RANKS (default: all)")
    p.add_argument("--debug", action="store_true", help="Enable parallel debugger attach")
    p.add_argument("jobid", metavar="ID")
    args = p.parse_args(argv)
    if args.read_only and args.stdin_ranks != "all":
        raise CmdError("Do not use --stdin-ranks with --read-only")
    if args.stdin_ranks != "all":
        from flux.core.util import idset

        try:
            idset.decode(args.stdin_ranks)
        except ValueError:
            raise CmdError(f"Invalid value '{args.stdin_ranks}' for --stdin-ranks") from None
    jobid = parse_jobid(args.jobid)
    return attach(_handle(), jobid, label_io=args.label_io, show_events=args.show_events,
                  show_exec=args.show_exec, wait_event=args.wait_event,
                  readonly=args.read_only, unbuffered=args.unbuffered,
                  stdin_ranks=args.stdin_ranks, quiet=args.quiet, verbose=args.verbose,
                  show_status=args.show_status)


def cmd_wait(argv: list[str]) -> int:
    from flux.job.wait import wait_async

    p = _parser("wait", description="Wait for a job (submitted with waitable flag) to complete")
    p.add_argument("-a", "--all", action="store_true", help="Wait for all (waitable) jobs")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="Emit a line of output for all jobs, not just failing ones")
    p.add_argument("jobid", nargs="?", metavar="ID")
    args = p.parse_args(argv)
    jobid = FLUX_JOBID_ANY
    if args.jobid is not None:
        if args.all:
            raise CmdError("jobid not supported with --all")
        jobid = parse_jobid(args.jobid)
    h = _handle()
    if args.all:
        rc = 0
        while True:
            try:
                res = wait_async(h, FLUX_JOBID_ANY).get_status()
            except OSError as exc:
                if exc.errno == errno.ECHILD:
                    break
                raise CmdError(f"flux_job_wait_get_status: {exc.strerror}") from None
            if not res.success:
                sys.stderr.write(f"{res.jobid}: {res.errstr}\n")
                rc = 1
            elif args.verbose:
                sys.stderr.write(f"{res.jobid}: job completed successfully\n")
        return rc
    try:
        res = wait_async(h, jobid).get_status()
    except OSError as exc:
        log(exc.strerror or str(exc))
        return 2 if exc.errno in (errno.ECHILD, errno.EINVAL, errno.ENOENT) else 1
    if jobid == FLUX_JOBID_ANY:
        print(res.jobid)
    if not res.success:
        raise CmdError(res.errstr)
    return 0


def cmd_status(argv: list[str]) -> int:
    from flux.job.wait import result_async

    p = _parser("status", description="Wait for job(s) to complete and exit with largest exit code")
    p.add_argument("-v", "--verbose", action="count", default=0, help="Increase verbosity")
    p.add_argument("-e", "--exception-exit-code", type=int, default=1, metavar="N",
                   help="Exit code for jobs that end solely due to an exception (default 1)")
    p.add_argument("-j", "--json", action="store_true", help="Dump job result information as JSON")
    p.add_argument("jobids", nargs="+", metavar="ID")
    args = p.parse_args(argv)
    h = _handle()
    ids = [parse_jobid(x) for x in args.jobids]
    futures = [result_async(h, i) for i in ids]
    if args.verbose and len(ids) > 1:
        log(f"fetching status for {len(ids)} jobs")
    exit_code = 0
    for text, f in zip(args.jobids, futures, strict=True):
        try:
            res = f.get_dict()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise CmdError(f"{text}: No such job") from None
            raise CmdError(f"{text}: {exc.strerror}") from None
        if args.json:
            import json

            print(json.dumps(res, separators=(",", ":")))
        status = res.get("waitstatus", -1)
        code = 0 if status < 0 else (128 + os.WTERMSIG(status) if os.WIFSIGNALED(status)
                                     else os.WEXITSTATUS(status))
        exception = res.get("exception_occurred") and res.get("exception_severity") == 0
        exit_code = max(exit_code, code)
        if exception:
            exit_code = max(exit_code, args.exception_exit_code)
        if args.verbose:
            if status >= 0 and os.WIFSIGNALED(status):
                log(f"{text}: job shell died by signal {os.WTERMSIG(status)}")
            elif args.verbose > 1 or code != 0 or exception:
                if exception:
                    log(f"{text}: exception type={res.get('exception_type')}")
                else:
                    log(f"{text}: exited with exit code {code}")
    if args.verbose and len(ids) > 1:
        log("all done.")
    return exit_code


def _lookup(h, jobid: int, keys: list[str], flags: int = 0) -> dict:
    """Values of job keys via ``job-info.lookup`` (strings, undecoded)."""
    try:
        return h.rpc("job-info.lookup", {"id": int(jobid), "keys": keys, "flags": flags}).get()
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
    # no job-info service (e.g. a stripped-down instance): read the KVS directly (owner)
    from flux.core.job.fluid import encode_kvs
    from flux.kvs import get_raw

    out: dict[str, Any] = {"id": int(jobid)}
    for key in keys:
        raw = get_raw(h, f"{encode_kvs(int(jobid))}.{key}")
        out[key] = raw.decode("utf-8", errors="replace")
    return out


_EVENTLOG_PATHS = {"exec": "guest.exec.eventlog", "output": "guest.output", "input": "guest.input"}


def cmd_info(argv: list[str]) -> int:
    import json

    p = _parser("info", description="Display info for a job")
    p.add_argument("-o", "--original", action="store_true",
                   help="For key=jobspec, show the original submitted jobspec")
    p.add_argument("-b", "--base", action="store_true",
                   help="For key=jobspec or R, show the base version before updates")
    p.add_argument("jobid", metavar="ID")
    p.add_argument("keys", nargs="+", metavar="KEY")
    args = p.parse_args(argv)
    if args.original and args.base:
        raise CmdError("Do not specify --original and --base together")
    jobid = parse_jobid(args.jobid)
    h = _handle()
    keys = ["J" if (k == "jobspec" and args.original) else k for k in args.keys]
    try:
        resp = _lookup(h, jobid, keys, 0 if args.base or args.original else 2)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise CmdError(f"job {args.jobid} id or key not found") from None
        raise CmdError(exc.strerror or str(exc)) from None
    for orig, key in zip(args.keys, keys, strict=True):
        val = resp.get(key)
        if key == "J" and orig == "jobspec":
            from flux.core.security.sign import SignError, unwrap

            try:
                val = unwrap(val)[1].decode()
            except (SignError, AttributeError) as exc:
                raise CmdError(f"failed to unwrap J: {exc}") from None
        if not isinstance(val, str):
            val = json.dumps(val, separators=(",", ":"))
        sys.stdout.write(val if val.endswith("\n") else val + "\n")
    return 0


def _format_event(ev, fmt: str, tfmt: str, state: dict) -> str:
    """`flux job eventlog` line: text (``%f name k=v``) or raw JSON."""
    import json

    if fmt == "json":
        return json.dumps(dict(ev), separators=(",", ":"), ensure_ascii=False)
    ts = ev.timestamp
    if "t0" not in state:
        state["t0"] = ts
    if tfmt == "offset":
        stamp = f"{ts - state['t0']:f}"
    elif tfmt == "iso":
        import datetime

        stamp = datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="microseconds")
    elif tfmt == "human":
        import time

        if state.get("human_base") is None or ts - state["human_base"] >= 60:
            state["human_base"] = ts
            stamp = "[" + time.strftime("%b%d %H:%M", time.localtime(ts)) + "]"
        else:
            stamp = f"[{'+' + format(ts - state['human_base'], '.6f'):>12}]"
    else:
        stamp = f"{ts:f}"
    parts = [stamp, ev.name]
    for k, v in ev.context.items():
        parts.append(f"{k}={json.dumps(v, separators=(',', ':'), ensure_ascii=False)}")
    return " ".join(parts)


def _add_format_opts(p) -> None:
    p.add_argument("-f", "--format", default="text", choices=("text", "json"),
                   help="Specify output format: text, json")
    p.add_argument("-T", "--time-format", default="raw", choices=("raw", "iso", "offset", "human"),
                   help="Specify time format: raw, iso, offset, human")
    p.add_argument("-H", "--human", action="store_true", help="Display human-readable output")
    p.add_argument("-L", "--color", nargs="?", const="always", default="never",
                   help="Colorize output (accepted, not implemented)")
    p.add_argument("-p", "--path", default="eventlog",
                   help="Eventlog path: eventlog (default), exec, output, input, or a key")


def cmd_eventlog(argv: list[str]) -> int:
    from flux.job.event import _decode_events, event_watch

    p = _parser("eventlog", description="Display eventlog for a job")
    _add_format_opts(p)
    p.add_argument("-F", "--follow", action="store_true", help="Follow eventlog until the job ends")
    p.add_argument("jobid", metavar="ID")
    args = p.parse_args(argv)
    jobid = parse_jobid(args.jobid)
    path = _EVENTLOG_PATHS.get(args.path, args.path)
    tfmt = "human" if args.human else args.time_format
    h = _handle()
    state: dict = {}
    try:
        if args.follow:
            for ev in event_watch(h, jobid, path):
                print(_format_event(ev, args.format, tfmt, state), flush=True)
            return 0
        resp = _lookup(h, jobid, [path])
        for ev in _decode_events(resp.get(path) or ""):
            print(_format_event(ev, args.format, tfmt, state))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise CmdError(f"job {args.jobid} not found" if path == "eventlog"
                           else f"job {args.jobid}: {path} not found") from None
        if exc.errno == errno.EPERM:
            raise CmdError(f"job {args.jobid}: permission denied") from None
        raise CmdError(exc.strerror or str(exc)) from None
    return 0


def cmd_wait_event(argv: list[str]) -> int:
    import json

    from flux.job.event import event_watch_async

    p = _parser("wait-event", description="Wait for an event in a job eventlog")
    _add_format_opts(p)
    p.add_argument("-t", "--timeout", metavar="DURATION", help="timeout after DURATION")
    p.add_argument("-m", "--match-context", action="append", metavar="KEY=VAL",
                   help="match key=val in context")
    p.add_argument("-c", "--count", type=int, default=1, metavar="N",
                   help="required number of matches (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="Do not output matched event")
    p.add_argument("-v", "--verbose", action="store_true", help="Output all events before matched event")
    p.add_argument("-W", "--waitcreate", action="store_true", help="wait for the eventlog to exist")
    p.add_argument("jobid", metavar="ID")
    p.add_argument("event", metavar="EVENT")
    args = p.parse_args(argv)
    jobid = parse_jobid(args.jobid)
    path = _EVENTLOG_PATHS.get(args.path, args.path)
    tfmt = "human" if args.human else args.time_format
    timeout = -1.0
    if args.timeout is not None:
        from flux.core.util.fsd import parse_fsd

        try:
            timeout = parse_fsd(args.timeout)
        except ValueError as exc:
            raise CmdError(f"invalid timeout: {exc}") from None
    matches = []
    for kv in args.match_context or []:
        key, eq, val = kv.partition("=")
        if not eq:
            raise CmdError(f"match-context must be KEY=VAL: '{kv}'")
        try:
            matches.append((key, json.loads(val)))
        except ValueError:
            matches.append((key, val))
    import time

    deadline = None if timeout < 0 else time.monotonic() + timeout
    h = _handle()
    f = event_watch_async(h, jobid, path, flags=1 if args.waitcreate else 0)
    state: dict = {}
    count = 0
    try:
        while True:
            remaining = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                f.wait_for(remaining)
            except TimeoutError:
                f.cancel()
                raise CmdError(f"wait-event timeout on event '{args.event}'") from None
            ev = f.get_event()
            if ev is None:
                raise CmdError(f"event '{args.event}' never received")
            hit = ev.name == args.event and all(
                k in ev.context and (ev.context[k] == v or str(ev.context[k]) == str(v))
                for k, v in matches)
            if hit:
                count += 1
            if args.verbose or (hit and count >= args.count and not args.quiet):
                print(_format_event(ev, args.format, tfmt, state), flush=True)
            if hit and count >= args.count:
                f.cancel()
                return 0
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise CmdError(f"job {args.jobid} not found") from None
        raise CmdError(exc.strerror or str(exc)) from None


def _signal(text: str) -> int:
    from flux.cmd.jobopts import decode_signal

    try:
        signum = decode_signal(text)
    except ValueError:
        raise CmdError(f"signal '{text}' is invalid") from None
    if not 0 < signum < 65:
        raise CmdError(f"signal '{text}' is invalid")
    return signum


def cmd_kill(argv: list[str]) -> int:
    from flux.job.kill import kill_async

    p = _parser("kill", description="Send signal to running job(s)")
    p.add_argument("-s", "--signal", default="SIGTERM", metavar="SIG",
                   help="Send signal SIG (default SIGTERM)")
    p.add_argument("jobids", nargs="+", metavar="ID")
    args = p.parse_args(argv)
    signum = _signal(args.signal)
    h = _handle()
    futures = [(t, kill_async(h, parse_jobid(t), signum)) for t in args.jobids]
    rc = 0
    for text, f in futures:
        try:
            f.get()
        except OSError as exc:
            log(f"{text}: {exc.strerror}")
            rc = 1
    return rc


def _userid(user: str | None) -> int:
    if user is None:
        return os.getuid()
    if user == "all":
        return 0xFFFFFFFF
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        try:
            return int(user)
        except ValueError:
            raise CmdError(f"Invalid user {user} specified") from None


_STATES = {"depend": 2, "priority": 4, "sched": 8, "run": 16, "cleanup": 32,
           "pending": 14, "running": 48, "active": 62}


def _statemask(states: list[str] | None, default: int = 62) -> int:
    if not states:
        return default
    mask = 0
    for s in ",".join(states).split(","):
        try:
            mask |= _STATES[s.strip().lower()]
        except KeyError:
            raise CmdError(f"Invalid state {s} specified") from None
    return mask


def _plural(n: int, word: str = "job") -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cmd_killall(argv: list[str]) -> int:
    p = _parser("killall", description="Send signal to multiple running jobs")
    p.add_argument("-u", "--user", metavar="USER", help="Set target user or 'all'")
    p.add_argument("-s", "--signal", default="SIGTERM", metavar="SIG", help="Send signal SIG")
    p.add_argument("-f", "--force", action="store_true", help="Confirm the command")
    args = p.parse_args(argv)
    signum = _signal(args.signal)
    resp = _handle().rpc("job-manager.killall", {"dry_run": not args.force,
                                                 "userid": _userid(args.user),
                                                 "signum": signum}).get()
    count, errors = resp.get("count", 0), resp.get("errors", 0)
    if count and not args.force:
        sys.stderr.write(f"Command matched {_plural(count)}\n")
        sys.stderr.write("Use --force to really signal them\n")
    elif count:
        sys.stderr.write(f"flux-job: Signaled {_plural(count)} ({_plural(errors, 'error')})\n")
    else:
        sys.stderr.write("Command matched 0 jobs\n")
    return 1 if errors else 0


def cmd_raise(argv: list[str]) -> int:
    from flux.job.kill import job_raise_async

    p = _parser("raise", description="Raise exception on job(s)")
    p.add_argument("-s", "--severity", type=int, default=0, metavar="N",
                   help="Set exception severity [0-7] (0 is fatal, default 0)")
    p.add_argument("-t", "--type", default="cancel", metavar="TYPE",
                   help="Set exception type (default=cancel)")
    p.add_argument("-m", "--message", metavar="NOTE", help="Set exception note")
    p.add_argument("args", nargs="+", metavar="ID|NOTE")
    args = p.parse_args(argv)
    if not 0 <= args.severity <= 7:
        raise CmdError("severity must be 0-7")
    ids, note = _ids_and_note(args.args)
    if args.message:
        note = args.message if not note else f"{args.message} {note}"
    h = _handle()
    futures = [(t, job_raise_async(h, i, args.type, args.severity, note)) for t, i in ids]
    rc = 0
    for text, f in futures:
        try:
            f.get()
        except OSError as exc:
            log(f"{text}: {exc.strerror}")
            rc = 1
    return rc


def _ids_and_note(words: list[str]) -> tuple[list, str]:
    """Leading job ids, then (after `--` or the first non-id) a free-form note."""
    from flux.job.JobID import JobID

    ids = []
    i = 0
    while i < len(words):
        if words[i] == "--":
            i += 1
            break
        try:
            ids.append((words[i], JobID(words[i])))
        except (OSError, ValueError):
            break
        i += 1
    if not ids:
        raise CmdError(f"error parsing jobid: '{words[0]}'")
    return ids, " ".join(words[i:])


def cmd_raiseall(argv: list[str]) -> int:
    p = _parser("raiseall", description="Raise an exception on multiple jobs")
    p.add_argument("-s", "--severity", type=int, default=7, metavar="N",
                   help="Set exception severity [0-7] (default 7)")
    p.add_argument("-u", "--user", metavar="USER", help="Set target user or 'all'")
    p.add_argument("-S", "--states", action="append", metavar="STATES",
                   help="Set target job states (default=active)")
    p.add_argument("-f", "--force", action="store_true", help="Confirm the command")
    p.add_argument("type", metavar="TYPE")
    p.add_argument("note", nargs="*", metavar="NOTE")
    args = p.parse_args(argv)
    payload = {"dry_run": not args.force, "userid": _userid(args.user),
               "states": _statemask(args.states), "severity": args.severity,
               "type": args.type, "note": " ".join(args.note)}
    resp = _handle().rpc("job-manager.raiseall", payload).get()
    count, errors = resp.get("count", 0), resp.get("errors", 0)
    if count and not args.force:
        sys.stderr.write(f"Command matched {_plural(count)}\nUse --force to really raise\n")
    elif count:
        sys.stderr.write(f"flux-job: Raised exception on {_plural(count)} "
                         f"({_plural(errors, 'error')})\n")
    else:
        sys.stderr.write("Command matched 0 jobs\n")
    return 1 if errors else 0


def cmd_urgency(argv: list[str]) -> int:
    p = _parser("urgency", description="Set job urgency (0-31, hold, default, expedite)")
    p.add_argument("-v", "--verbose", action="store_true", help="Output old urgency value on success")
    p.add_argument("jobid", metavar="ID")
    p.add_argument("urgency", metavar="N")
    args = p.parse_args(argv)
    jobid = parse_jobid(args.jobid)
    names = {"hold": 0, "default": 16, "expedite": 31}
    text = args.urgency.lower()
    if text in names:
        urgency = names[text]
    else:
        try:
            urgency = int(text)
            if urgency < 0:
                raise ValueError
        except ValueError:
            raise CmdError(f"urgency: invalid value '{args.urgency}'") from None
    try:
        resp = _handle().rpc("job-manager.urgency", {"id": int(jobid), "urgency": urgency}).get()
    except OSError as exc:
        raise CmdError(f"{args.jobid}: {exc.strerror}") from None
    if args.verbose:
        old = resp.get("old_urgency")
        if old == 0:
            sys.stderr.write("old urgency: job held\n")
        elif old == 31:
            sys.stderr.write("old urgency: job expedited\n")
        else:
            sys.stderr.write(f"old urgency: {old}\n")
    return 0


def cmd_id(argv: list[str]) -> int:
    from flux.core.job import fluid

    p = _parser("id", description="Convert job ids between encodings")
    p.add_argument("-t", "--to", default="dec", metavar="ENCODING",
                   help="Convert to: dec, kvs, hex, dothex, words, f58, f58plain, emoji")
    p.add_argument("-f", "--from", dest="from_", metavar="ENCODING",
                   help="Accepted for compatibility; the encoding is detected")
    p.add_argument("jobids", nargs="*", metavar="ID")
    args = p.parse_args(argv)
    if args.to not in fluid.ENCODINGS:
        raise CmdError(f"Unknown to=ENCODING '{args.to}'")
    words = args.jobids or [ln.strip() for ln in sys.stdin if ln.strip()]
    rc = 0
    for word in words:
        try:
            n = fluid.parse(word)
        except (OSError, ValueError):
            raise CmdError(f"{word}: malformed input") from None
        print(fluid.encode(n, args.to))
    return rc


def cmd_last(argv: list[str]) -> int:
    from flux.job.JobID import JobID

    p = _parser("last", description="List my most recently submitted job id(s)")
    p.add_argument("slice", nargs="?", metavar="N|[SLICE]")
    args = p.parse_args(argv)
    text = args.slice or "[:1]"
    if "[" not in text:
        try:
            text = f"[:{int(text)}]"
        except ValueError:
            raise CmdError(f"invalid argument '{args.slice}' (N or [SLICE])") from None
    try:
        resp = _handle().rpc("job-manager.history.get", {"slice": text}).get()
    except OSError as exc:
        raise CmdError(exc.strerror or str(exc)) from None
    jobs = resp.get("jobs", [])
    if not jobs:
        raise CmdError("job history is empty")
    for j in jobs:
        print(JobID(j))
    return 0


def cmd_purge(argv: list[str]) -> int:
    p = _parser("purge", description="Purge the oldest inactive jobs")
    p.add_argument("--age-limit", metavar="FSD", help="Purge jobs that became inactive beyond age-limit")
    p.add_argument("--num-limit", type=int, metavar="COUNT",
                   help="Purge oldest inactive jobs until COUNT are left")
    p.add_argument("-f", "--force", action="store_true", help="Perform the irreversible purge")
    p.add_argument("--batch", type=int, default=50, metavar="COUNT",
                   help="Limit number of jobs per request (default 50)")
    p.add_argument("jobids", nargs="*", metavar="ID")
    args = p.parse_args(argv)
    h = _handle()
    total = 0
    try:
        if args.jobids:
            futures = [h.rpc("job-manager.purge-id", {"id": int(parse_jobid(t)), "force": args.force})
                       for t in args.jobids]
            for f in futures:
                total += f.get().get("count", 0)
        else:
            age = -1.0
            if args.age_limit is not None:
                from flux.core.util.fsd import parse_fsd

                try:
                    age = parse_fsd(args.age_limit)
                except ValueError as exc:
                    raise CmdError(f"--age-limit: {exc}") from None
            num = -1 if args.num_limit is None else args.num_limit
            while True:
                count = h.rpc("job-manager.purge", {"age_limit": age, "num_limit": num,
                                                    "batch": args.batch, "force": args.force}
                              ).get().get("count", 0)
                total += count
                if not args.force or count < args.batch:
                    break
        inactive = h.rpc("job-manager.stats-get").get().get("inactive_jobs", 0)
    except OSError as exc:
        raise CmdError(f"purge: {exc.strerror}") from None
    if args.force:
        print(f"purged {total} inactive jobs, {inactive} remaining")
    else:
        print(f"use --force to purge {total} of {inactive} inactive jobs")
    return 0


def cmd_taskmap(argv: list[str]) -> int:
    from flux.core.job.taskmap import TaskMap, TaskMapError

    p = _parser("taskmap", description="Utility function for working with job task maps")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--taskids", type=int, metavar="NODEID", help="Print idset of tasks on node NODEID")
    g.add_argument("--ntasks", type=int, metavar="NODEID", help="Print number of tasks on node NODEID")
    g.add_argument("--nodeid", type=int, metavar="TASKID", help="Print the node ID that ran TASKID")
    g.add_argument("--hostname", type=int, metavar="TASKID", help="Print the hostname that ran TASKID")
    g.add_argument("--to", choices=("raw", "pmi", "multiline", "hosts"),
                   help="Convert the taskmap to another format")
    p.add_argument("target", metavar="JOBID|TASKMAP")
    args = p.parse_args(argv)
    h = None
    jobid = None
    try:
        tmap = TaskMap.decode(args.target)
    except (TaskMapError, ValueError):
        from flux.job.JobID import JobID

        try:
            jobid = JobID(args.target)
        except (OSError, ValueError):
            raise CmdError(f"error parsing jobid or taskmap: '{args.target}'") from None
        h = _handle()
        tmap = _job_taskmap(h, jobid)
    try:
        if args.taskids is not None:
            from flux.core.util import idset

            _check_nodeid(tmap, args.taskids)
            print(idset.encode(tmap.taskids(args.taskids)))
        elif args.ntasks is not None:
            _check_nodeid(tmap, args.ntasks)
            print(tmap.ntasks(args.ntasks))
        elif args.nodeid is not None:
            print(tmap.nodeid(args.nodeid))
        elif args.hostname is not None:
            if jobid is None:
                raise CmdError("--hostname only works with a jobid")
            hosts = _job_hosts(h, jobid)
            print(hosts[tmap.nodeid(args.hostname)])
        elif args.to == "raw":
            print(tmap.encode("raw"))
        elif args.to == "pmi":
            print(tmap.encode("pmi"))
        elif args.to == "multiline":
            for node in range(tmap.nnodes):
                for t in tmap.taskids(node):
                    print(f"{t}: {node}")
        elif args.to == "hosts":
            if jobid is None:
                raise CmdError("--to=hosts only works with a jobid")
            hosts = _job_hosts(h, jobid)
            for node in range(tmap.nnodes):
                from flux.core.util import idset

                print(f"{hosts[node]}: {idset.encode(tmap.taskids(node))}")
        else:
            print(tmap.encode("json"))
    except (TaskMapError, ValueError, IndexError) as exc:
        raise CmdError(str(exc) or "invalid id") from None
    return 0


def _check_nodeid(tmap, nodeid: int) -> None:
    if not 0 <= nodeid < tmap.nnodes:
        raise CmdError(f"nodeid {nodeid} is not in the taskmap")


def _job_taskmap(h, jobid):
    from flux.core.job.taskmap import TaskMap
    from flux.job.event import _decode_events

    try:
        text = _lookup(h, jobid, ["guest.exec.eventlog"]).get("guest.exec.eventlog") or ""
    except OSError as exc:
        raise CmdError(f"{jobid}: {exc.strerror}") from None
    for ev in _decode_events(text):
        if ev.name == "shell.start" and "taskmap" in ev.context:
            return TaskMap.decode(ev.context["taskmap"])
    raise CmdError(f"{jobid}: no shell.start event found")


def _job_hosts(h, jobid) -> list[str]:
    import json

    from flux.core.util import hostlist

    try:
        R = _lookup(h, jobid, ["R"]).get("R")
    except OSError as exc:
        raise CmdError(f"{jobid}: R: {exc.strerror}") from None
    if isinstance(R, str):
        R = json.loads(R)
    nodelist = (R or {}).get("execution", {}).get("nodelist", [])
    hosts: list[str] = []
    for item in nodelist:
        hosts.extend(hostlist.decode(item))
    return hosts


COMMANDS = {
    "attach": (cmd_attach, "Interactively attach to job"),
    "wait": (cmd_wait, "Wait for job(s) to complete (waitable jobs only)"),
    "status": (cmd_status, "Wait for job(s) to complete and exit with largest exit code"),
    "info": (cmd_info, "Display info for a job"),
    "eventlog": (cmd_eventlog, "Display eventlog for a job"),
    "wait-event": (cmd_wait_event, "Wait for an event"),
    "kill": (cmd_kill, "Send signal to running job(s)"),
    "killall": (cmd_killall, "Send signal to multiple running jobs"),
    "raise": (cmd_raise, "Raise exception on job(s)"),
    "raiseall": (cmd_raiseall, "Raise an exception on multiple jobs"),
    "cancel": (None, "Cancel job(s) (use flux cancel)"),
    "urgency": (cmd_urgency, "Set job urgency (0-31, hold, default, expedite)"),
    "id": (cmd_id, "Convert job ids to another form"),
    "last": (cmd_last, "List my most recently submitted job id(s)"),
    "purge": (cmd_purge, "Purge the oldest inactive jobs"),
    "taskmap": (cmd_taskmap, "Utility function for working with job task maps"),
}


def usage() -> str:
    lines = ["Usage: flux job SUBCOMMAND [OPTIONS...]", "", "subcommands:"]
    lines += [f"  {name:<12}{desc}" for name, (_f, desc) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(usage())
        return 0 if argv else 1
    name, rest = argv[0], argv[1:]
    entry = COMMANDS.get(name)
    if entry is None:
        log(f"unknown subcommand '{name}'")
        sys.stderr.write(usage())
        return 1
    fn = entry[0]
    if fn is None:
        from flux.cmd.cancel import main as cancel_main

        return cancel_main(rest)
    try:
        return fn(rest)
    except CmdError as exc:
        log(str(exc))
        return exc.code
    except OSError as exc:
        log(exc.strerror or str(exc))
        return 1
