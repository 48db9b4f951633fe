"""pty: run tasks on a pseudo-terminal (flux-shell-options(7) `pty`).

Options: `pty` (any true value) or `pty.interactive` / `pty.capture` turn it on;
`pty.ranks` (an idset of task ranks, or "all"; default "0") says which tasks get
one. Such a task runs in a session of its own with the pty's slave as controlling
terminal and as stdin, stdout and stderr; what it writes is read from the master
and kept as its stdout in the output eventlog (so `flux job attach` shows it), and
stdin sent to the job (`flux job attach`, `flux alloc`) is written to the master.
`pty.interactive` (what `flux alloc` asks for on a terminal) also sends output
without delay, and the shell's service gets the method `pty-resize {rows, cols}`
for the client's window size.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import termios

from flux.core.hookspecs import hookimpl

INTERACTIVE_BATCH_TIMEOUT = 0.005  # seconds: keystrokes echo at once


def _options(shell) -> dict | None:
    opt = shell.getopt("pty")
    if not opt:
        return None
    return opt if isinstance(opt, dict) else {"capture": 1}


def _ranks(opt: dict, ntasks: int) -> set[int]:
    spec = opt.get("ranks", "0")
    if spec == "all":
        return set(range(ntasks))
    from flux.core.util import idset

    try:
        return set(idset.decode(str(spec)))
    except ValueError:
        raise ValueError(f"pty.ranks: invalid idset '{spec}'") from None


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@hookimpl
def shell_init(shell):
    opt = _options(shell)
    if opt is None:
        return
    ranks = _ranks(opt, shell.info.ntasks)
    shell.aux["pty"] = {"ranks": ranks, "masters": {}, "slaves": {}}
    if opt.get("interactive"):
        shell.output.batch_timeout = INTERACTIVE_BATCH_TIMEOUT
        shell.service_register("pty-resize", lambda msg: _resize(shell, msg))


@hookimpl
def task_init(shell, task):
    st = shell.aux.get("pty")
    if st is None or task.rank not in st["ranks"]:
        return
    master, slave = os.openpty()
    set_size(master, 24, 80)
    st["masters"][task.rank] = master
    st["slaves"][task.rank] = slave
    task.ctty = os.ttyname(slave)
    task.stdin_fd = task.stdout_fd = task.stderr_fd = slave
    shell.output.add_stream(task, "stdout", os.dup(master))


@hookimpl
def task_fork(shell, task):
    st = shell.aux.get("pty")
    if st is None or task.rank not in st["slaves"]:
        return
    os.close(st["slaves"].pop(task.rank))  # the master sees EIO once the task is gone
    from flux.shell.input import StdinWriter

    shell.stdin_writers[task.rank] = StdinWriter(shell.loop, os.dup(st["masters"][task.rank]))


@hookimpl
def shell_exit(shell):
    st = shell.aux.pop("pty", None)
    if st is None:
        return
    for fd in (*st["masters"].values(), *st["slaves"].values()):
        try:
            os.close(fd)
        except OSError:
            pass


def _resize(shell, msg) -> None:
    p = msg.data() or {}
    rows, cols = p.get("rows"), p.get("cols")
    if not all(isinstance(v, int) and 0 < v < 65536 for v in (rows, cols)):
        shell.conn.respond_error(msg, errno.EPROTO, "pty-resize: rows and cols must be integers 1-65535")
        return
    for fd in shell.aux.get("pty", {}).get("masters", {}).values():
        try:
            set_size(fd, rows, cols)
        except OSError:
            pass
    shell.conn.respond(msg, {})
