"""input: read task stdin from a file (`input.stdin = {type: file, path}`).

The default type `service` gives each task a pipe fed from the job's input
eventlog (`flux job attach` writes there through the shell's `stdin` service).
"""

from __future__ import annotations

import os

from flux.core.hookspecs import hookimpl
from flux.shell import mustache


@hookimpl
def shell_init(shell):
    opts = shell.getopt("input") or {}
    if not isinstance(opts, dict):
        raise ValueError("shell option input must be an object")
    conf = opts.get("stdin")
    if conf is None:
        return
    if not isinstance(conf, dict):
        raise ValueError("shell option input.stdin must be an object {type, path}")
    t = conf.get("type", "service")
    if t == "service":
        return
    if t != "file":
        raise ValueError(f"input.stdin.type={t}: expected service or file")
    path = conf.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError("input.stdin.type=file needs a path")
    path = mustache.render(path, shell)
    if not os.path.isabs(path) and shell.cwd:
        path = os.path.join(shell.cwd, path)
    if not os.access(path, os.R_OK):
        raise ValueError(f"input.stdin: cannot read {path}")
    shell.aux["input.path"] = path


@hookimpl
def task_init(shell, task):
    path = shell.aux.get("input.path")
    if path is not None:
        # each task gets its own open file (its own offset), as if it read a copy
        task.stdin_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@hookimpl
def task_fork(shell, task):
    if shell.aux.get("input.path") is not None and task.stdin_fd is not None:
        os.close(task.stdin_fd)
        task.stdin_fd = -1
