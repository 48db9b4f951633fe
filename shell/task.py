"""One task of a job shell, and how it is started.

Tasks start with `os.posix_spawn` (vfork+exec: cheap even from a large process), in
a worker thread of the shell process (see Spawner). What posix_spawn cannot do
itself is done around the call by that thread: it changes the working directory
before, sets its own CPU affinity (inherited by the child) and sets the resource
limits before and restores them after. If a plugin implements `task_exec` (code
that must run in the child), tasks start with fork+exec instead, so the hook can
run between the two.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
from collections.abc import Callable
from typing import Any

# name (as `flux run --rlimit` spells it) -> RLIMIT_* (Linux numbers where Python lacks one)
RLIMITS = {name: getattr(resource, "RLIMIT_" + const, num) for name, const, num in (
    ("cpu", "CPU", 0), ("fsize", "FSIZE", 1), ("data", "DATA", 2), ("stack", "STACK", 3),
    ("core", "CORE", 4), ("rss", "RSS", 5), ("nproc", "NPROC", 6), ("nofile", "NOFILE", 7),
    ("ofile", "NOFILE", 7), ("memlock", "MEMLOCK", 8), ("as", "AS", 9), ("locks", "LOCKS", 10),
    ("sigpending", "SIGPENDING", 11), ("msgqueue", "MSGQUEUE", 12), ("nice", "NICE", 13),
    ("rtprio", "RTPRIO", 14), ("rttime", "RTTIME", 15))}
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class TaskStartError(OSError):
    """A task could not be started (errno as from exec: ENOENT, EACCES...)."""


class Task:
    """A task: what a plugin may read and change before it starts.

    Plugins edit `env` (a dict), `argv`, `cpus` (a set of OS cpu ids, or None for no
    binding) and `rlimits` in task_init; `pid` and `status` appear later.
    """

    __slots__ = ("shell", "rank", "localid", "argv", "env", "cwd", "cpus", "rlimits", "pid",
                 "pidfd", "status", "exitcode", "signaled", "state", "stdin_fd", "stdout_fd",
                 "stderr_fd", "exit_time", "aux", "extra_fds", "ctty", "__weakref__")

    def __init__(self, shell: Any, rank: int, localid: int, argv: list[str], env: dict[str, str],
                 cwd: str | None):
        self.shell = shell
        self.rank = rank  # global task rank
        self.localid = localid
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.cpus: set[int] | None = None
        self.rlimits: dict[int, int] = {}
        self.pid = 0
        self.pidfd = -1
        self.status = 0  # wait(2) status
        self.exitcode = 0  # shell view: exit code, or 128+signal
        self.signaled = 0
        self.state = "Init"
        # set by plugins to give the task a file instead of a pipe to the shell
        self.stdin_fd: int | None = None
        self.stdout_fd: int | None = None
        self.stderr_fd: int | None = None
        self.exit_time = 0.0
        self.aux: dict = {}
        # (fd in the shell, fd in the task) beyond stdin/stdout/stderr, e.g. PMI_FD
        self.extra_fds: list[tuple[int, int]] = []
        # a terminal (e.g. /dev/pts/3) to run the task on, in a session of its own
        # with it as controlling terminal and as stdin/stdout/stderr (the pty plugin)
        self.ctty: str | None = None

    # flux-core's task API names, for plugins ported from C/Lua
    def getenv(self, name: str) -> str | None:
        return self.env.get(name)

    def setenv(self, name: str, value: str, overwrite: bool = True) -> None:
        if overwrite or name not in self.env:
            self.env[name] = str(value)

    def unsetenv(self, name: str) -> None:
        self.env.pop(name, None)

    def pass_fd(self, fd: int) -> int:
        """Give the task a copy of the shell's `fd`; returns its number in the task
        (3, 4, ... in the order asked). The shell keeps its own copy."""
        child = 3 + len(self.extra_fds)
        self.extra_fds.append((fd, child))
        return child

    def info(self) -> dict:
        """Task info as in the `shell.task-exit` exec event."""
        d = {"localid": self.localid, "rank": self.rank, "state": self.state, "pid": self.pid}
        if self.state == "Exited":
            d.update(wait_status=self.status, exitcode=self.exitcode, signaled=self.signaled)
        return d

    def set_exited(self, status: int) -> None:
        self.status = status
        self.state = "Exited"
        if os.WIFSIGNALED(status):
            self.signaled = os.WTERMSIG(status)
            self.exitcode = 128 + self.signaled
        else:
            self.exitcode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1

    def kill(self, signum: int) -> None:
        if self.pid <= 0 or self.state == "Exited":
            return
        try:
            if self.shell.setpgrp:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(self.pid, signum)


def resolve(cmd: str, env: dict[str, str], cwd: str | None) -> str:
    """The file to exec for argv[0], searched in the task's own PATH (as execvp would)."""
    if "/" in cmd:
        path = cmd if os.path.isabs(cmd) or not cwd else os.path.join(cwd, cmd)
        if not os.path.exists(path):
            raise TaskStartError(errno.ENOENT, os.strerror(errno.ENOENT))
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise TaskStartError(errno.EACCES, os.strerror(errno.EACCES))
        return path
    found = shutil.which(cmd, path=env.get("PATH", DEFAULT_PATH))
    if found is None:
        raise TaskStartError(errno.ENOENT, os.strerror(errno.ENOENT))
    if cwd and not os.path.isabs(found):
        found = os.path.join(cwd, found)
    return found


def _late_nofile(soft: int, then: Callable[[Task], None] | None) -> Callable[[Task], None]:
    """An exec hook setting RLIMIT_NOFILE in the child (then the caller's own hook)."""
    def hook(task: Task) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (soft if hard == resource.RLIM_INFINITY or soft <= hard else hard, hard))
        if then is not None:
            then(task)
    return hook


class Spawner:
    """Starts the tasks of every shell of one process.

    Starting a process blocks its caller until the child has exec'd (vfork), a
    millisecond or more on a busy node, and creating or removing a job's tmpdir
    touches the disk. Neither may stall the event loop that serves every job of the
    rank, so they run in worker threads: `pool` (SPAWN_THREADS threads, so that one
    child's exec need not wait for another's) starts tasks, `fs_pool` makes
    directories and `rm_pool` removes them.

    The working directory and resource limits are per process, yet inherited by
    each child: a spawning thread holds a lease on them (a (cwd, limits) setting);
    threads with the same setting spawn side by side, another setting waits until
    the current one is unused. The CPU binding is per thread on Linux, so each
    spawning thread sets its own.
    """

    SPAWN_THREADS = 2

    def __init__(self) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.initial_cwd = os.getcwd()
        try:
            self.own_cpus: set[int] | None = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            self.own_cpus = None
        self.own_limits: dict[int, tuple[int, int]] = {}
        self.setting: tuple = (self.initial_cwd, ())  # what the process has now
        self.users = 0  # threads spawning under `setting`
        self.restore: list = []  # limits to put back when the setting is left
        self.cond = threading.Condition()
        self.local = threading.local()  # .cpus: the spawning thread's binding
        self.pool = ThreadPoolExecutor(self.SPAWN_THREADS, thread_name_prefix="flux-shell-spawn")
        # directories: made on the start path (two threads: parallel creations are much
        # faster on a journaling file system), removed in the background
        self.fs_pool = ThreadPoolExecutor(2, thread_name_prefix="flux-shell-mkdir")
        self.rm_pool = ThreadPoolExecutor(1, thread_name_prefix="flux-shell-rmdir")

    def _enter(self, cwd: str | None, rlimits: dict[int, int]) -> None:
        want = (cwd or self.initial_cwd, tuple(sorted(rlimits.items())))
        with self.cond:
            while self.users and self.setting != want:
                self.cond.wait()
            if self.setting != want:
                self._undo_limits()
                if want[0] != self.setting[0]:
                    os.chdir(want[0])
                self.setting = (want[0], ())
                self.restore = self._limits(rlimits)
                self.setting = want
            self.users += 1

    def _leave(self) -> None:
        with self.cond:
            self.users -= 1
            if self.users == 0:
                if self.restore:  # the shell itself must not keep a job's limits
                    self._undo_limits()
                    self.setting = (self.setting[0], ())
                self.cond.notify_all()

    def _undo_limits(self) -> None:
        for res, lim in self.restore:
            try:
                resource.setrlimit(res, lim)
            except (ValueError, OSError):
                pass
        self.restore = []

    def _limits(self, rlimits: dict[int, int]) -> list[tuple[int, tuple[int, int]]]:
        """Lower/raise our soft limits to the task's; return what to restore."""
        restore = []
        for res, soft in rlimits.items():
            cur = self.own_limits.get(res)
            if cur is None:
                cur = self.own_limits[res] = resource.getrlimit(res)
            if cur[0] == soft:
                continue
            hard = cur[1]
            want = soft if hard == resource.RLIM_INFINITY or 0 <= soft <= hard else hard
            try:
                resource.setrlimit(res, (want, hard))
                restore.append((res, cur))
            except (ValueError, OSError):
                pass
        return restore

    def spawn_all(self, batch: list[tuple[Task, tuple[int, int, int]]], setpgrp: bool,
                  exec_hook: Callable[[Task], None] | None = None
                  ) -> tuple[list[int], TaskStartError | None]:
        """Start tasks in order (in a `pool` thread); stop at the first that cannot
        start. Returns the pids started and that task's error (or None)."""
        pids: list[int] = []
        for task, fds in batch:
            try:
                pids.append(self.spawn(task, fds, setpgrp, exec_hook))
            except TaskStartError as exc:
                return pids, exc
            except OSError as exc:  # chdir, affinity: the task cannot start as asked
                return pids, TaskStartError(exc.errno or errno.EINVAL, exc.strerror or str(exc))
        return pids, None

    def spawn(self, task: Task, fds: tuple[int, int, int], setpgrp: bool,
              exec_hook: Callable[[Task], None] | None = None) -> int:
        """Start the task with fds as its stdin, stdout, stderr; return its pid.

        Raises TaskStartError (errno of the failed exec) if it cannot start."""
        path = resolve(task.argv[0], task.env, task.cwd)
        want = task.cpus or self.own_cpus
        if want is not None and want != getattr(self.local, "cpus", self.own_cpus):
            os.sched_setaffinity(0, want)
            self.local.cpus = want
        rlimits, hook = task.rlimits, exec_hook
        nofile = rlimits.get(resource.RLIMIT_NOFILE)
        if nofile is not None and 0 <= nofile <= max(*fds, *(s for s, _d in task.extra_fds)):
            # a file limit below the numbers of the fds the task is handed would make them
            # invalid before they are moved to 0-2: set that limit in the child, after
            rlimits = {k: v for k, v in rlimits.items() if k != resource.RLIMIT_NOFILE}
            hook = _late_nofile(nofile, exec_hook)
        self._enter(task.cwd, rlimits)
        try:
            if hook is not None:
                return self._fork(task, path, fds, setpgrp, hook)
            actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
            if task.ctty:  # opened after setsid: it becomes the controlling terminal
                actions = [(os.POSIX_SPAWN_OPEN, 0, task.ctty, os.O_RDWR, 0),
                           (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)]
            actions += [(os.POSIX_SPAWN_DUP2, src, dst) for src, dst in task.extra_fds]
            try:
                kw = {"setsid": True} if task.ctty else {"setpgroup": 0} if setpgrp else {}
                return os.posix_spawn(path, task.argv, task.env, file_actions=actions,
                                      setsigdef=(signal.SIGPIPE, signal.SIGINT,
                                                 signal.SIGTERM, signal.SIGHUP,
                                                 signal.SIGCHLD),
                                      setsigmask=(), **kw)
            except OSError as exc:
                raise TaskStartError(exc.errno, exc.strerror) from None
        finally:
            self._leave()

    def shutdown(self) -> None:
        for p in (self.pool, self.fs_pool, self.rm_pool):
            p.shutdown(wait=True)

    @staticmethod
    def _fork(task: Task, path: str, fds: tuple[int, int, int], setpgrp: bool,
              exec_hook: Callable[[Task], None]) -> int:
        # errors from the child come back on a pipe: empty means exec succeeded
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: only async-signal-safe work and the plugins' task_exec
            try:
                os.close(r)
                if task.ctty:
                    os.setsid()
                    fd = os.open(task.ctty, os.O_RDWR)  # the controlling terminal now
                    fds = (fd, fd, fd)
                elif setpgrp:
                    os.setpgid(0, 0)
                for i, fd in enumerate(fds):
                    os.dup2(fd, i)
                for src, dst in task.extra_fds:
                    if src == dst:
                        os.set_inheritable(dst, True)
                    else:
                        os.dup2(src, dst)
                for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                            signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                exec_hook(task)
                os.execve(path, task.argv, task.env)
            except OSError as exc:
                os.write(w, f"{exc.errno or errno.EINVAL}".encode())
            except BaseException:  # noqa: BLE001 - a failing hook must not return into the shell
                os.write(w, f"{errno.EINVAL}".encode())
            os._exit(127)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            err = f.read()
        if err:
            os.waitpid(pid, 0)
            code = int(err)
            raise TaskStartError(code, os.strerror(code))
        return pid
