"""`flux start`: start an instance (one broker here, or N with --test-size) and run a
command in it, exiting with that command's exit code.

Without --test-size the broker runs in this process: a singleton, or, when a
launcher offers PMI (PMI_FD, PMI_RANK, PMI_SIZE: our job shell, `srun --mpi=pmi2`),
one broker of the launcher's instance (flux.core.broker.boot)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from flux.cmd.util import Parser, die


def build_parser() -> Parser:
    p = Parser("flux start", description="Start a Flux instance and run COMMAND in it.")
    p.add_argument("-s", "--test-size", type=int, metavar="N", help="start N brokers on this host")
    p.add_argument("--test-hosts", metavar="HOSTLIST", help="fake host names, one per broker")
    p.add_argument("--test-exit-timeout", default="20s", metavar="FSD",
                   help="after rank 0 exits, how long to wait for the others")
    p.add_argument("--test-exit-mode", choices=["any", "leader"], default="leader")
    p.add_argument("--test-start-mode", choices=["all", "leader"], default="all")
    p.add_argument("-o", "--broker-opts", action="append", default=[], metavar="OPTS",
                   help="extra broker options (comma separated)")
    p.add_argument("-S", "--setattr", action="append", default=[], metavar="ATTR=VAL")
    p.add_argument("-c", "--config-path", metavar="DIR")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VAL|FILE")
    p.add_argument("--rundir", metavar="DIR")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-X", "--noexec", action="store_true", help="print what would run, do nothing")
    p.add_argument("command", nargs="...", help="initial program (default: a shell)")
    return p


def _broker_args(args) -> list[str]:
    out = []
    for opts in args.broker_opts:
        out.extend(o for o in opts.split(",") if o)
    for a in args.setattr:
        out.append(f"-S{a}")
    if args.config_path:
        out.append(f"--config-path={args.config_path}")
    for c in args.conf:
        out.append(f"--conf={c}")
    return out


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    command = args.command
    if command and command[0] == "--":
        command = command[1:]
    for a in args.setattr:
        if "=" not in a:
            return die("flux-start", f"--setattr '{a}' must be ATTR=VAL")
    from flux.core.util.fsd import parse_fsd

    try:
        exit_timeout = parse_fsd(args.test_exit_timeout)
    except ValueError as exc:
        return die("flux-start", str(exc))
    if args.test_size is None:
        if args.test_hosts:
            return die("flux-start", "--test-hosts requires --test-size")
        return _run_single(args, command)
    if args.test_size < 1:
        return die("flux-start", f"--test-size must be at least 1, not {args.test_size}")
    hosts = None
    if args.test_hosts:
        from flux.core.util.hostlist import decode, encode

        try:
            hosts = decode(args.test_hosts)
        except ValueError as exc:
            return die("flux-start", str(exc))
        if len(hosts) < args.test_size:
            return die("flux-start", f"--test-hosts lists {len(hosts)} hosts, fewer than "
                                     f"--test-size={args.test_size}")
        hosts = hosts[: args.test_size]
    rundir = args.rundir or tempfile.mkdtemp(prefix="flux-")
    created = args.rundir is None
    os.makedirs(rundir, exist_ok=True)
    # -P: a broker never imports from its working directory (a user's, under a job)
    base = [sys.executable, "-P", "-m", "flux.core.broker.main"] + _broker_args(args)
    base.append(f"-Srundir={rundir}")
    if not hosts:
        # every broker runs here: the hostlist names this host once per rank
        from flux.core.util.hostlist import encode

        base.append(f"-Shostlist={encode([os.uname().nodename] * args.test_size)}")
    else:
        base.append(f"-Shostlist={encode(hosts)}")
    procs: list[subprocess.Popen] = []
    if args.noexec:
        for r in range(args.test_size):
            print(" ".join(base + [f"--boot-rank={r}", f"--boot-size={args.test_size}"]))
        return 0
    old = {s: signal.signal(s, lambda *a: None) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        for r in range(args.test_size):
            cmd = base + [f"--boot-rank={r}", f"--boot-size={args.test_size}"]
            if hosts:
                cmd.append(f"-Shostname={hosts[r]}")
            if r == 0:
                cmd += ["--"] + command
            procs.append(subprocess.Popen(cmd, start_new_session=(r != 0)))
        return _wait(procs, exit_timeout, args.test_exit_mode)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if created:
            shutil.rmtree(rundir, ignore_errors=True)


def _wait(procs: list[subprocess.Popen], exit_timeout: float, mode: str) -> int:
    leader = procs[0]

    def forward(sig, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    rc = leader.wait()
    worst = rc
    for p in procs[1:]:
        try:
            prc = p.wait(timeout=exit_timeout)
        except subprocess.TimeoutExpired:
            sys.stderr.write(f"flux-start: broker pid {p.pid} did not exit within "
                             f"{exit_timeout}s of rank 0; killing it\n")
            p.kill()
            prc = p.wait()
        worst = max(worst, prc if prc >= 0 else 128 - prc)
    if rc < 0:
        rc = 128 - rc
    return worst if mode == "any" else rc


def _run_single(args, command: list[str]) -> int:
    from flux.core.broker.main import main as broker_main

    extra = [f"-Srundir={args.rundir}"] if args.rundir else []
    if args.noexec:
        # one broker: a singleton, or one of a PMI launcher's instance (PMI_FD set)
        print(" ".join([sys.executable, "-P", "-m", "flux.core.broker.main", *_broker_args(args),
                        *extra, "--", *command]))
        return 0
    if args.rundir:
        os.makedirs(args.rundir, exist_ok=True)
    return broker_main(_broker_args(args) + extra + ["--"] + command)
