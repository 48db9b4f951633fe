"""`flux watch` and :class:`JobWatcher`, which also implements ``flux submit --wait``,
``--wait-event`` and ``--watch``: follow many jobs' eventlogs (and output) at once,
with an optional progress bar, and compute the largest exit code."""

from __future__ import annotations

import sys
import time
from typing import Any

from flux.cmd.job import OutputPrinter, waitstatus_to_exitcode


class _Job:
    __slots__ = ("id", "stdout", "stderr", "wait", "status", "events", "main_f", "exec_f",
                 "done", "printer")

    def __init__(self, jobid, stdout, stderr, wait: str):
        self.id = jobid
        self.stdout = stdout
        self.stderr = stderr
        self.wait = wait
        self.status = "pending"
        self.events: set[str] = set()
        self.main_f = self.exec_f = None
        self.done = False
        self.printer = None


class JobWatcher:
    """Watch the status (and with ``watch=True`` the output) of many jobs.

    Jobs are added with :meth:`add_jobid`; run the handle's reactor; :attr:`exitcode`
    is then the largest job exit code (1 for a job that failed before starting)."""

    def __init__(self, h, progress: bool = False, jps: bool = False, wait: str | None = "clean",
                 watch: bool = False, log_events: bool = False, log_status: bool = False,
                 labelio: bool = False, stdout: Any = None, stderr: Any = None):
        self.h = h
        self.wait = wait or "clean"
        self.watch = watch
        self.log_events = log_events
        self.log_status = log_status
        self.labelio = labelio
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.exitcode = 0
        self.t0 = time.time()
        self.jobs: dict[int, _Job] = {}
        self.counts = {"pending": 0, "running": 0, "complete": 0, "failed": 0}
        self.finished = 0
        self.bar = None
        self.timer = None
        self.show_progress = progress
        self.jps = jps

    def start(self) -> JobWatcher:
        if self.show_progress and self.bar is None:
            from flux.cmd.jobopts import ProgressBar

            after = "{percent:5.1f}% {jps:4.1f} job/s" if self.jps else "{percent:5.1f}% {elapsed:.1f}s"
            self.bar = ProgressBar(0, before="PD:{pending:<3} R:{running:<3} CD:{complete:<3} "
                                   "F:{failed:<3} ", after=after)
            self.bar.total = 0
            self.timer = self.h.timer_watcher_create(0.25, lambda *a: self._redraw(), repeat=0.25)
            self.timer.start()
        return self

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        if self.bar is not None:
            self._redraw()
            self.bar.stream.write("\n")
            self.bar.stream.flush()
            self.bar = None

    def _redraw(self) -> None:
        if self.bar is not None:
            self.bar.total = max(len(self.jobs), 1)
            self.bar.count = self.finished
            self.bar.fields.update(self.counts)
            self.bar.redraw()

    # ------------------------------------------------------------------ jobs
    def add_jobid(self, jobid, stdout: Any = None, stderr: Any = None, wait: str | None = None) -> None:
        from flux.job.event import event_watch_async

        job = _Job(jobid, stdout or self.stdout, stderr or self.stderr, wait or self.wait)
        self.jobs[int(jobid)] = job
        self.counts["pending"] += 1
        job.main_f = event_watch_async(self.h, jobid).then(self._event_cb, job)
        self._redraw()

    def _set(self, job: _Job, status: str) -> None:
        if job.status != status:
            self.counts[job.status] -= 1
            self.counts[status] += 1
            job.status = status

    def _finish(self, job: _Job) -> None:
        if job.done:
            return
        job.done = True
        self.finished += 1
        if job.status in ("pending", "running"):
            self._set(job, "failed" if "exception" in job.events else "complete")
        self._redraw()
        if self.finished == len(self.jobs) and self.timer is not None:
            self.timer.stop()

    def _log(self, job: _Job, ts: float, msg: str) -> None:
        job.stderr.write(f"{job.id}: {ts - self.t0:4.3f}s: {msg}\n")
        job.stderr.flush()

    def _event_cb(self, f, job: _Job) -> None:
        try:
            ev = f.get_event()
        except OSError as exc:
            job.stderr.write(f"{job.id}: {exc.strerror}\n")
            self.exitcode = max(self.exitcode, 1)
            self._set(job, "failed")
            self._finish(job)
            return
        if ev is None:
            self._finish(job)
            return
        job.events.add(ev.name)
        if ev.timestamp < self.t0:
            self.t0 = ev.timestamp
        if self.log_events:
            self._log(job, ev.timestamp, f"{ev.name} {ev.context_string}".rstrip())
        ctx = ev.context
        if ev.name == "exception" and ctx.get("severity") == 0:
            if "start" not in job.events:
                self.exitcode = max(self.exitcode, 1)
                self._set(job, "failed")
            if "shell.init" not in job.events:
                job.stderr.write(f"{job.id}: job.exception type={ctx.get('type')} "
                                 f"severity=0 {ctx.get('note', '')}\n")
                job.stderr.flush()
        elif ev.name == "alloc":
            self._set(job, "running")
        elif ev.name == "start":
            if self.watch or job.wait.startswith("exec."):
                from flux.job.event import event_watch_async

                job.exec_f = event_watch_async(self.h, job.id, "guest.exec.eventlog").then(
                    self._exec_cb, job)
        elif ev.name == "finish":
            status = ctx.get("status", 0)
            code, _ = waitstatus_to_exitcode(status)
            self.exitcode = max(self.exitcode, code)
            self._set(job, "failed" if status else "complete")
            if self.log_status:
                self._log(job, ev.timestamp, f"{job.status}: status={status}")
        if job.wait == ev.name:
            f.cancel(stop=True)
            self._finish(job)

    def _exec_cb(self, f, job: _Job) -> None:
        try:
            ev = f.get_event()
        except OSError:
            ev = None
        if ev is None:
            return
        job.events.add("exec." + ev.name)
        if self.log_events:
            self._log(job, ev.timestamp, f"exec.{ev.name} {ev.context_string}".rstrip())
        if self.watch and ev.name == "shell.init":
            job.events.add("shell.init")
            from flux.job.event import event_watch_async

            job.printer = OutputPrinter(label_io=self.labelio, prefix=f"{job.id}: " if self.labelio else "")
            event_watch_async(self.h, job.id, "guest.output").then(self._output_cb, job)
            if not job.wait.startswith("exec."):
                f.cancel(stop=True)
        if job.wait == f"exec.{ev.name}":
            f.cancel(stop=True)
            if job.main_f is not None:
                job.main_f.cancel(stop=True)
            self._finish(job)

    def _output_cb(self, f, job: _Job) -> None:
        try:
            ev = f.get_event()
        except OSError:
            return
        if ev is not None and job.printer is not None:
            job.printer.event(ev)


# --------------------------------------------------------------- flux watch


def _select_jobs(h, args) -> list[int]:
    """Job ids from job-list: my active jobs (--active), all of mine (--all), or
    those matching --filter; at most --count."""
    import os

    states = {"depend": 2, "priority": 4, "sched": 8, "run": 16, "cleanup": 32, "inactive": 64,
              "pending": 14, "running": 48, "active": 62}
    results = {"completed", "failed", "canceled", "timeout"}
    terms: list[dict] = [{"userid": [os.getuid()]}]
    if args.filter:
        mask, res = 0, []
        for word in args.filter.lower().split(","):
            if word in states:
                mask |= states[word]
            elif word in results:
                res.append(word)
            else:
                raise ValueError(f"invalid filter '{word}'")
        sel = []
        if mask:
            sel.append({"states": [mask]})
        if res:
            sel.append({"results": res})
        terms.append(sel[0] if len(sel) == 1 else {"or": sel})
    elif args.all:
        terms.append({"states": [127]})
    else:
        terms.append({"states": [62]})
    payload = {"max_entries": args.count, "attrs": ["id"], "constraint": {"and": terms}}
    if args.since:
        if args.since.startswith("-"):
            from flux.core.util.fsd import parse_fsd

            payload["since"] = time.time() - parse_fsd(args.since[1:])
        else:
            from flux.cmd.jobopts import parse_datetime

            payload["since"] = parse_datetime(args.since)
    try:
        resp = h.rpc("job-list.list", payload).get()
    except OSError as exc:
        raise OSError(exc.errno, f"job-list.list: {exc.strerror}") from None
    return [j["id"] for j in resp.get("jobs", [])]


def main(argv: list[str]) -> int:
    import flux
    from flux.cmd.util import Parser
    from flux.job.JobID import JobID

    p = Parser("flux-watch", usage="flux watch [OPTIONS] [JOBID...]",
               description="Watch one or more jobs until they finish, copying their output")
    p.add_argument("-a", "--active", action="store_true", help="Watch all active jobs of the user")
    p.add_argument("-A", "--all", action="store_true", help="Watch all jobs of the user")
    p.add_argument("-c", "--count", type=int, default=1000, metavar="N",
                   help="Limit to N selected jobs (default 1000)")
    p.add_argument("--since", metavar="WHEN", help="With --all, only jobs inactive since WHEN")
    p.add_argument("-f", "--filter", metavar="STATE|RESULT", help="Watch jobs with these states/results")
    p.add_argument("--progress", action="store_true", help="Show a progress bar (terminal only)")
    p.add_argument("--jps", action="store_true", help="With --progress, show job throughput")
    p.add_argument("-l", "--label-io", action="store_true", help="Label output lines with jobid and rank")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="Log final status (-v) and every event (-vv) on stderr")
    p.add_argument("jobids", nargs="*", metavar="JOBID")
    args = p.parse_args(argv)
    if args.jobids and (args.active or args.all or args.filter):
        sys.stderr.write("flux-watch: do not specify job ids with --active, --all or --filter\n")
        return 1
    if not args.jobids and not (args.active or args.all or args.filter):
        sys.stderr.write("flux-watch: specify job ids, or one of --active, --all, --filter\n")
        return 1
    try:
        ids = [JobID(x) for x in args.jobids]
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"flux-watch: {exc}\n")
        return 1
    try:
        h = flux.Flux()
        if not ids:
            ids = [JobID(i) for i in _select_jobs(h, args)]
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"flux-watch: {getattr(exc, 'strerror', None) or exc}\n")
        return 1
    if not ids:
        sys.stderr.write("flux-watch: no matching jobs\n")
        return 0
    progress = args.progress and sys.stdout.isatty()
    w = JobWatcher(h, progress=progress, jps=args.jps, watch=True, labelio=args.label_io,
                   log_status=args.verbose > 0, log_events=args.verbose > 1).start()
    for jobid in ids:
        w.add_jobid(jobid)
    h.reactor_run()
    w.stop()
    return w.exitcode
