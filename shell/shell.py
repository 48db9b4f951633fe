"""The job shell: runs one job's tasks on one broker rank (flux-shell(1), SPEC 7.4).

Lifecycle (plugin hooks of group `flux.shell` in brackets):
  parse jobspec and R, lay out tasks, create them [shell_init] [shell_post_init];
  for each task: build its environment [task_init], start it ([task_exec] in the
  child when a plugin asks for it), [task_fork]; [shell_start]; report "start".
  Each exit: [task_exit]. When every task has exited and its output is read:
  [shell_finish], output committed, [shell_exit], report "finish" with the wait
  status `exitcode << 8`, where exitcode is the largest task exit code (a task
  killed by signal N counts 128+N).

A start failure (for example a missing command) is fatal: the shell reports an
`exec` exception `task R (host H): start failed: CMD: <strerror>`, kills the tasks
already started and finishes with 127 (not found), 126 (not executable) or 1.

A JobShell does not own a process: a host (the per-rank shell server, or the
standalone `flux-shell`) gives it a broker connection, a task spawner, the plugin
stack, and a reporter that carries start/exception/finish to exec.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import time
from collections.abc import Callable
from typing import Any, Protocol

from flux.core.job import fluid
from flux.shell.info import JobInfo, ShellInfoError
from flux.shell.output import Output, header
from flux.shell.plugin import PluginFailed
from flux.shell.task import RLIMITS, Task

LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG = 3, 4, 6, 7


class Reporter(Protocol):
    def started(self, shell: JobShell) -> None: ...
    def exception(self, shell: JobShell, etype: str, note: str, severity: int = 0) -> None: ...
    def task_exit(self, shell: JobShell, info: dict) -> None: ...
    def finished(self, shell: JobShell, status: int) -> None: ...


def _remove_dir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


class ShellFatal(Exception):
    def __init__(self, exitcode: int, note: str):
        super().__init__(note)
        self.exitcode, self.note = exitcode, note


class JobShell:
    """One job's shell on one rank."""

    def __init__(self, host: Any, jobid: int, userid: int, jobspec: dict, R: dict,
                 reporter: Reporter, write_headers: bool = False):
        self.host = host
        self.conn = host.conn
        self.plugins = host.plugins
        self.jobid = jobid
        self.userid = userid
        self.jobspec = jobspec
        self.R = R
        self.reporter = reporter
        self.write_headers = write_headers  # standalone: the leader starts the eventlogs
        self.loop = asyncio.get_running_loop()
        self.namespace = f"job-{jobid}"
        self.hostname = host.hostname
        self.broker_rank = host.broker_rank
        self.tasks: list[Task] = []
        self.running = 0
        self.exitcode = 0
        self.fatal_code: int | None = None
        self.first_exit: dict | None = None
        self.first_exit_reported = False
        self.tmpdir: str | None = None
        self.env: dict[str, str] = {}
        self.options: dict = {}
        self.info: JobInfo | None = None
        self.rankinfo = None
        self.shell_rank = 0
        self.setpgrp = True
        self.output: Output | None = None
        self.stdin_writers: dict[int, Any] = {}
        self.started = False
        self.finishing = False
        self.done = False
        self.kill_signal = 0
        self.stdin_ready = False
        self.pending_stdin: list[tuple] = []
        self.starting: asyncio.Future | None = None
        self.aux: dict = {}  # plugin data
        self.cwd: str | None = None
        self.output_tail = b""  # output events not yet committed when the shell finished
        self.rlimits: dict[int, int] = {}
        self.t0 = time.time()
        # methods of the shell's own service `<uid>-shell-<id>.<method>` (plugins add
        # them); requests that arrive before the method is registered wait for it
        self.service_methods: dict[str, Callable[[Any], None]] = {}
        self.parked: list = []

    # ============================================================ helpers
    @property
    def jobid_f58(self) -> str:
        return fluid.encode_f58(self.jobid)

    @property
    def service(self) -> str:
        """The shell's service name (SPEC 7.4 step 2)."""
        return f"{self.userid}-shell-{fluid.encode_f58plain(self.jobid)}"

    def getopt(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def setenv(self, name: str, value: str, overwrite: bool = True) -> None:
        """Set a variable in the environment of every task not yet started."""
        if overwrite or name not in self.env:
            self.env[name] = str(value)

    def unsetenv(self, name: str) -> None:
        self.env.pop(name, None)

    def log(self, level: int, message: str, component: str | None = None) -> None:
        """A shell log message, kept in the output eventlog (`flux job attach` shows it)."""
        if self.output is not None:
            self.output.log(level, message, component)

    def warn(self, message: str) -> None:
        self.log(LOG_WARNING, message)

    def kvs_append(self, key: str, data: bytes) -> asyncio.Future | None:
        """Append to a key of the job's guest namespace."""
        import base64

        op = {"key": key, "flags": 32,
              "dirent": {"ver": 1, "type": "val", "data": base64.b64encode(data).decode()}}
        try:
            return self.conn.rpc("kvs.commit", {"namespace": self.namespace, "flags": 0,
                                                "ops": [op]})
        except OSError as exc:
            if not self.done:
                self.log_local(f"kvs commit failed: {exc}")
            return None

    def service_register(self, method: str, cb: Callable[[Any], None]) -> None:
        """Handle requests `<service>.<method>` with cb(msg) (respond with
        `shell.conn.respond`)."""
        self.service_methods[method] = cb
        parked, self.parked = self.parked, []
        for m, msg in parked:
            self.service_request(m, msg)

    def service_request(self, method: str, msg: Any) -> None:
        """A request to this shell's service: to its method's handler; while the shell
        is still starting, an unknown method waits (a peer shell may be ahead of us)."""
        cb = self.service_methods.get(method)
        if cb is not None:
            cb(msg)
        elif not self.started and not self.done and self.fatal_code is None:
            self.parked.append((method, msg))
        else:
            self.conn.respond_error(msg, errno.ENOSYS, f"No service matching {msg.topic}")

    def _unpark(self) -> None:
        parked, self.parked = self.parked, []
        for _m, msg in parked:
            try:
                self.conn.respond_error(msg, errno.ENOSYS, f"No service matching {msg.topic}")
            except OSError:
                pass

    def log_local(self, text: str) -> None:
        self.host.log(f"job {self.jobid}: {text}")

    # ============================================================ start
    def start(self) -> None:
        """Set up and start the tasks (in the background); reports start, or a fatal
        exception."""
        self.starting = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        try:
            self._setup()
            await self._make_tmpdir()
            self.plugins.call("shell_init", self)
            if self.write_headers and self.shell_rank == 0:
                self._write_headers()
            self.output.redirect_events([t.rank for t in self.tasks])
            self.plugins.call("shell_post_init", self)
            await self._start_tasks()
            self.plugins.call("shell_start", self)
        except ShellFatal as exc:
            self.die(exc.exitcode, exc.note)
            return
        except PluginFailed as exc:
            self.die(1, str(exc))
            return
        except (ShellInfoError, ValueError, TypeError) as exc:
            self.die(1, f"{exc}")
            return
        except Exception as exc:  # noqa: BLE001 - any other failure still ends the job
            self.die(1, f"job shell error: {exc!r}")
            return
        self.started = True
        self._unpark()
        self.reporter.started(self)
        self._check_done()

    def _setup(self) -> None:
        self.info = info = JobInfo(self.jobid, self.jobspec, self.R)
        self.rankinfo = info.rank_info(self.broker_rank)
        self.shell_rank = self.rankinfo.nodeid
        self.options = info.options
        if not self.hostname:
            self.hostname = self.rankinfo.host or os.uname().nodename
        self.setpgrp = not self.options.get("nosetpgrp")
        self.output = Output(self, self.options)
        self.output.closed_cb = self._check_done
        self._environment()
        cmd = info.spec["command"]
        cwd = info.spec["cwd"]
        if cwd and not os.path.isdir(cwd):
            self.warn(f"Could not change dir to {cwd}: {os.strerror(errno.ENOENT)}. "
                      "Going to /tmp instead")
            cwd = "/tmp"
        self.cwd = cwd
        for localid, rank in enumerate(self.rankinfo.taskids):
            self.tasks.append(Task(self, rank, localid, cmd, {}, cwd))
        self.rlimits = self._rlimits()

    def _environment(self) -> None:
        info = self.info
        env = {k: str(v) for k, v in info.spec["environment"].items() if v is not None}
        env.pop("FLUX_PROXY_REMOTE", None)
        if "HOSTNAME" in env:
            env["HOSTNAME"] = self.hostname
        f58 = self.jobid_f58
        env["FLUX_JOB_ID"] = f58
        parent = self.host.jobid_path or "/"
        env["FLUX_JOB_ID_PATH"] = (parent.rstrip("/") + "/" + f58) if parent != "/" else "/" + f58
        env["FLUX_JOB_SIZE"] = str(info.ntasks)
        env["FLUX_JOB_NNODES"] = str(info.nnodes)
        env["FLUX_URI"] = self.host.uri
        env["FLUX_KVS_NAMESPACE"] = self.namespace
        self.env = env

    async def _make_tmpdir(self) -> None:
        """FLUX_JOB_TMPDIR, made off the event loop (a disk write)."""
        base = self.host.rundir or os.environ.get("TMPDIR") or "/tmp"
        tmpdir = os.path.join(base, f"jobtmp-{self.shell_rank}-{self.jobid_f58}")
        try:
            await self.loop.run_in_executor(self.host.spawner.fs_pool, os.mkdir, tmpdir, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            self.warn(f"could not create FLUX_JOB_TMPDIR {tmpdir}: {exc.strerror}")
            return
        self.tmpdir = tmpdir
        self.env["FLUX_JOB_TMPDIR"] = tmpdir

    def _rlimits(self) -> dict[int, int]:
        opt = self.options.get("rlimit")
        if not opt:
            return {}
        if not isinstance(opt, dict):
            raise ShellFatal(1, "shell option rlimit must be an object {name: limit}")
        out = {}
        for name, val in opt.items():
            res = RLIMITS.get(name)
            if res is None:
                raise ShellFatal(1, f"rlimit: unknown resource limit '{name}'")
            if isinstance(val, bool) or not isinstance(val, int):
                raise ShellFatal(1, f"rlimit.{name}: limit must be an integer")
            out[res] = val if val >= 0 else -1
        return out

    def _write_headers(self) -> None:
        from flux.shell.output import entry

        self.kvs_append("output", entry("header", header(self.info.ntasks)))
        self.kvs_append("input", entry("header", header(self.info.ntasks, ("stdin",))))

    # ============================================================ tasks
    async def _start_tasks(self) -> None:
        exec_hook = None
        if self.plugins.has("task_exec"):
            def exec_hook(task: Task) -> None:
                self.plugins.call("task_exec", self, task)
        spawner = self.host.spawner
        batch = []
        try:
            for task in self.tasks:
                env = dict(self.env)
                env["FLUX_TASK_RANK"] = str(task.rank)
                env["FLUX_TASK_LOCAL_ID"] = str(task.localid)
                task.env = env
                task.rlimits = dict(self.rlimits)
                self.plugins.call("task_init", self, task)
                stdin_fd, stdin_w = self._stdin_for(task)
                out_fd, err_fd = self.output.task_fds(task)
                batch.append((task, (stdin_fd, out_fd, err_fd), stdin_w))
            pids, err = await self.loop.run_in_executor(
                spawner.pool, spawner.spawn_all, [(t, fds) for t, fds, _w in batch],
                self.setpgrp, exec_hook)
        except BaseException:
            pids, err = [], None
            self._release_fds(batch, 0)
            raise
        self._release_fds(batch, len(pids))
        for (task, _fds, stdin_w), pid in zip(batch, pids, strict=False):
            task.pid = pid
            task.state = "Running"
            self.running += 1
            if stdin_w is not None:
                self.stdin_writers[task.rank] = stdin_w
            try:
                task.pidfd = os.pidfd_open(pid)
                self.loop.add_reader(task.pidfd, self._reap, task)
            except OSError:  # the task is gone already: reap it now
                task.pidfd = -1
                self.loop.call_soon(self._reap, task)
        self.stdin_ready = True
        for ranks, data, eof in self.pending_stdin:
            self.stdin(ranks, data, eof)
        self.pending_stdin.clear()
        if self.kill_signal:  # killed while the tasks were starting
            self.kill(self.kill_signal)
        if err is not None:
            task = batch[len(pids)][0]
            ec = 126 if err.errno in (errno.EPERM, errno.EACCES) else \
                127 if err.errno == errno.ENOENT else 1
            raise ShellFatal(ec, f"task {task.rank} (host {self.hostname}): start failed: "
                                 f"{task.argv[0]}: {os.strerror(err.errno)}")
        for task in self.tasks:
            self.plugins.call("task_fork", self, task)

    def _release_fds(self, batch: list, nstarted: int) -> None:
        """Close the shell's copies of the tasks' pipe ends (and the stdin writers of
        tasks that did not start)."""
        for i, (task, fds, stdin_w) in enumerate(batch):
            for fd in set(fds):
                if fd not in (task.stdin_fd, task.stdout_fd, task.stderr_fd) \
                        and not self._is_sink_fd(fd):
                    os.close(fd)
            if i >= nstarted and stdin_w is not None:
                stdin_w.close()

    def _is_sink_fd(self, fd: int) -> bool:
        for s in self.output.sinks.values():
            for sink in (s.values() if isinstance(s, dict) else (s,)):
                if sink.fd == fd:
                    return True
        return False

    def _stdin_for(self, task: Task) -> tuple[int, Any]:
        if task.stdin_fd is not None:
            return task.stdin_fd, None
        from flux.shell.input import StdinWriter

        r, w = os.pipe()
        return r, StdinWriter(self.loop, w)

    def _reap(self, task: Task) -> None:
        try:
            pid, status = os.waitpid(task.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = task.pid, 0
        if pid == 0:
            return
        if task.pidfd >= 0:
            self.loop.remove_reader(task.pidfd)
            os.close(task.pidfd)
            task.pidfd = -1
        task.exit_time = time.time()
        task.set_exited(status)
        self.running -= 1
        if task.exitcode > self.exitcode:
            self.exitcode = task.exitcode
        w = self.stdin_writers.pop(task.rank, None)
        if w is not None:
            w.close()
        if self.first_exit is None:
            self.first_exit = dict(task.info(), timestamp=task.exit_time)
            if self.running > 0:  # exec starts the exit timer from the first exit
                self.first_exit_reported = True
                self.reporter.task_exit(self, self.first_exit)
        try:
            self.plugins.call("task_exit", self, task)
        except PluginFailed as exc:
            self.warn(str(exc))
        if (task.exitcode and self.options.get("exit-on-error") and self.fatal_code is None
                and not self.kill_signal):
            self.die(task.exitcode, f"task {task.rank} (host {self.hostname}) exited with "
                                    f"exit code {task.exitcode} (exit-on-error)")
        self.output.task_done(task)
        self._check_done()

    # ============================================================ control
    def kill(self, signum: int) -> None:
        """Signal every running task (its process group); tasks still starting get
        the signal once started."""
        self.kill_signal = signum
        for task in self.tasks:
            task.kill(signum)

    def die(self, exitcode: int, note: str) -> None:
        """A fatal shell error: raise an exec exception, kill the tasks, finish."""
        if self.fatal_code is None:
            self.fatal_code = exitcode
            self.reporter.exception(self, "exec", note)
            self.log(LOG_ERR, note)
        for task in self.tasks:
            task.kill(9)
        if self.output is None:
            self.loop.call_soon(self._finish_now)
            return
        self._check_done()

    def stdin(self, ranks: str | None, data: bytes, eof: bool) -> None:
        """Write to the stdin of local tasks (ranks "all" or an idset)."""
        from flux.core.util import idset

        if not self.stdin_ready:  # the tasks are still starting: keep it for them
            self.pending_stdin.append((ranks, data, eof))
            return
        targets = self.stdin_writers.keys() if ranks in (None, "all") else \
            [r for r in idset.decode(ranks) if r in self.stdin_writers]
        for r in list(targets):
            w = self.stdin_writers[r]
            if data:
                w.write(data)
            if eof:
                w.close()
                del self.stdin_writers[r]

    def _check_done(self) -> None:
        if (self.finishing or self.running > 0 or self.output is None
                or self.output.open_streams > 0
                or (self.starting is not None and not self.starting.done()
                    and self.fatal_code is None)):
            return
        self.finishing = True
        self.output.hold()  # the last events go with the finish report (handover)
        asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        try:
            self.plugins.call("shell_finish", self)
        except PluginFailed as exc:
            self.warn(str(exc))
        try:
            handover = getattr(self.reporter, "handover", False)
            self.output_tail = await self.output.close(handover)
            if self.output_tail and not handover:
                # stored before the finish report: exec then moves the namespace
                fut = self.kvs_append("output", self.output_tail)
                self.output_tail = b""
                if fut is not None:
                    await fut
        except Exception as exc:  # noqa: BLE001 - the job must still finish
            self.log_local(f"output: {exc!r}")
        try:
            self.plugins.call("shell_exit", self)
        except PluginFailed as exc:
            self.log_local(str(exc))
        self._finish_now()

    def _finish_now(self) -> None:
        if self.done:
            return
        self.done = True
        self._unpark()
        for w in self.stdin_writers.values():
            w.close()
        self.stdin_writers.clear()
        if self.output is not None:
            self.output.abort()
        if self.tmpdir:
            # an empty tmpdir (the usual case) goes at once, so it is gone when the job
            # is reported finished; a full one is removed in the background
            try:
                os.rmdir(self.tmpdir)
            except OSError:
                self.host.spawner.rm_pool.submit(_remove_dir, self.tmpdir)
        code = self.exitcode
        if self.fatal_code is not None:
            code = max(code, self.fatal_code)
        self.reporter.finished(self, (code & 0xFF) << 8)

    def abort(self) -> None:
        """The host is going away: kill everything now, no reports."""
        self.kill(9)  # also reaches tasks whose start is still in progress
        for task in self.tasks:
            if task.pidfd >= 0:
                self.loop.remove_reader(task.pidfd)
                os.close(task.pidfd)
                task.pidfd = -1
        if self.output is not None:
            self.output.abort()
