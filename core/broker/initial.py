"""Rank 0's initial program (rc2): a command, or an interactive shell."""

from __future__ import annotations

import asyncio
import os

# cleared so the initial program does not think it is a task of the enclosing job
_CLEARED_PREFIXES = ("FLUX_JOB_", "FLUX_TASK_", "PMI_", "SLURM_", "PMIX_", "PALS_")
_CLEARED = ("FLUX_KVS_NAMESPACE", "FLUX_PROXY_REMOTE", "I_MPI_PMI_LIBRARY", "FLUX_PMI_LIBRARY_PATH")


def initial_environment(broker) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_CLEARED_PREFIXES) and k not in _CLEARED}
    env["FLUX_URI"] = broker.attrs["local-uri"]
    jobid = broker.attrs.get("jobid")
    if jobid:
        env["FLUX_ENCLOSING_ID"] = jobid
    return env


def _on_terminal() -> bool:
    """stdin is a terminal whose foreground process group is ours."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _take_terminal() -> None:
    # in the child, before exec: a process group of its own, in the foreground
    import signal

    os.setpgid(0, 0)
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(0, os.getpgrp())
    finally:
        signal.signal(signal.SIGTTOU, old)


async def run_initial_program(broker, argv: list[str] | None) -> int:
    """Run argv (or $SHELL) with FLUX_URI set; return its exit code (128+sig if killed)."""
    if not argv:
        argv = [os.environ.get("SHELL", "/bin/sh")]
    kw = {}
    if _on_terminal():  # job control: the program owns the terminal, ^C is for it
        kw["preexec_fn"] = _take_terminal
    try:
        proc = await asyncio.create_subprocess_exec(*argv, env=initial_environment(broker), **kw)
    except OSError as exc:
        broker.log(3, f"rc2: cannot run {argv[0]}: {exc.strerror}")
        import sys

        print(f"flux-start: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    broker.initial_proc = proc
    rc = await proc.wait()
    broker.initial_proc = None
    if rc < 0:
        rc = 128 - rc
    broker.log(6, f"rc2: {argv[0]} exited with code {rc}")
    return rc
