"""One task of a job shell, and how it is started.

Tasks start with `os.posix_spawn` (vfork+exec: cheap even from a large process). What
posix_spawn cannot do itself is done around the call, in the (single-threaded) shell
process: the working directory is changed before, the CPU affinity and resource
limits are set on the shell before and restored after, so the child inherits them.
If a plugin implements `task_exec` (code that must run in the child), that task is
started with fork+exec instead so the hook can run between the two.
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
                 "stderr_fd", "exit_time", "aux", "__weakref__")

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

    # flux-core's task API names, for plugins ported from C/Lua
    def getenv(self, name: str) -> str | None:
        return self.env.get(name)

    def setenv(self, name: str, value: str, overwrite: bool = True) -> None:
        if overwrite or name not in self.env:
            self.env[name] = str(value)

    def unsetenv(self, name: str) -> None:
        self.env.pop(name, None)

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


class Spawner:
    """Starts tasks for every shell of one process (tracks the process' own cwd,
    affinity and limits, which spawned children inherit)."""

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        try:
            self.own_cpus: set[int] | None = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            self.own_cpus = None
        self.own_limits: dict[int, tuple[int, int]] = {}

    def _chdir(self, cwd: str | None) -> None:
        if cwd and cwd != self.cwd:
            os.chdir(cwd)
            self.cwd = cwd

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

    def spawn(self, task: Task, fds: tuple[int, int, int], setpgrp: bool,
              exec_hook: Callable[[Task], None] | None = None) -> int:
        """Start the task with fds as its stdin, stdout, stderr; return its pid.

        Raises TaskStartError (errno of the failed exec) if it cannot start."""
        path = resolve(task.argv[0], task.env, task.cwd)
        restore_cpus = False
        restore = self._limits(task.rlimits) if task.rlimits else []
        try:
            self._chdir(task.cwd)
            if task.cpus and self.own_cpus is not None and task.cpus != self.own_cpus:
                os.sched_setaffinity(0, task.cpus)
                restore_cpus = True
            if exec_hook is None:
                actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
                try:
                    return os.posix_spawn(path, task.argv, task.env, file_actions=actions,
                                          setpgroup=0 if setpgrp else None,
                                          setsigdef=(signal.SIGPIPE, signal.SIGINT,
                                                     signal.SIGTERM, signal.SIGHUP,
                                                     signal.SIGCHLD),
                                          setsigmask=())
                except OSError as exc:
                    raise TaskStartError(exc.errno, exc.strerror) from None
            return self._fork(task, path, fds, setpgrp, exec_hook)
        finally:
            if restore_cpus:
                os.sched_setaffinity(0, self.own_cpus)
            for res, lim in restore:
                try:
                    resource.setrlimit(res, lim)
                except (ValueError, OSError):
                    pass

    @staticmethod
    def _fork(task: Task, path: str, fds: tuple[int, int, int], setpgrp: bool,
              exec_hook: Callable[[Task], None]) -> int:
        # errors from the child come back on a pipe: empty means exec succeeded
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: only async-signal-safe work and the plugins' task_exec
            try:
                os.close(r)
                if setpgrp:
                    os.setpgid(0, 0)
                for i, fd in enumerate(fds):
                    os.dup2(fd, i)
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
