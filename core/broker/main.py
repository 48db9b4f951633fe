"""`flux broker`: run one broker process.

Bootstrap (who am I, who is my parent) is chosen by flux.core.broker.boot:
`flux start --test-size` (hidden --boot-* options), a `[bootstrap]` config, PMI
(PMI_FD/PMI_RANK/PMI_SIZE), or a singleton instance.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile

from flux.core.broker import enclosing
from flux.core.config import apply_conf_arg, load_dir, load_file


def parse_attr(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"attribute '{s}' must be NAME=VALUE")
    k, _, v = s.partition("=")
    return k.strip(), v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flux broker", description="Run a flux broker.")
    p.add_argument("-S", "--setattr", action="append", default=[], type=parse_attr,
                   metavar="ATTR=VAL", help="set a broker attribute")
    p.add_argument("-c", "--config-path", help="directory of TOML config files")
    p.add_argument("--conf", action="append", default=[], help="config KEY=VAL or file")
    p.add_argument("--boot-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--boot-size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def _load_config_path(path: str) -> dict:
    """-c: a directory of TOML/JSON files, or one such file (`flux batch --conf`
    hands the broker `{{tmpdir}}/conf.json`)."""
    if os.path.isfile(path):
        return load_file(path)
    return load_dir(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from flux.core.errors import FluxError

    try:
        conf = _load_config_path(args.config_path) if args.config_path else {}
        for c in args.conf:
            apply_conf_arg(conf, c)
    except FluxError as exc:
        print(f"flux-broker: {exc.strerror}", file=sys.stderr)
        return 1
    attrs = dict(args.setattr)
    from flux.core.broker.boot import select

    try:
        boot = select(conf, attrs, args.boot_rank, args.boot_size)
    except FluxError as exc:
        print(f"flux-broker: bootstrap: {exc.strerror}", file=sys.stderr)
        return 1
    for k, v in boot.attrs.items():
        attrs.setdefault(k, v)
    rank, size = boot.rank, boot.size
    created_rundir = None
    in_job = args.boot_rank is None and enclosing.job_attrs(os.environ)
    if in_job:  # a job's task: a child instance of the job's instance
        for k, v in in_job.items():
            attrs.setdefault(k, v)
    if "rundir" not in attrs:
        created_rundir = (in_job and enclosing.job_rundir(os.environ)) or \
            tempfile.mkdtemp(prefix="flux-")
        attrs["rundir"] = created_rundir
    command = args.command
    if command and command[0] == "--":
        command = command[1:]
    return run_broker(rank, size, attrs, conf, command, created_rundir, bootstrap=boot)


def run_broker(rank, size, attrs, conf, command, created_rundir=None, bootstrap=None) -> int:
    from flux.core.broker.broker import Broker
    from flux.core.errors import FluxError

    _limit_malloc_arenas()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        broker = Broker(rank, size, attrs=attrs, conf=conf, initial_program=command,
                        bootstrap=bootstrap)
        if os.environ.get("FLUX_BROKER_TRACEMALLOC"):
            rc = _traced(broker, os.environ["FLUX_BROKER_TRACEMALLOC"])
        elif os.environ.get("FLUX_BROKER_PROFILE"):
            rc = _profiled(broker, os.environ["FLUX_BROKER_PROFILE"])
        else:
            rc = asyncio.run(broker.run())
    except FluxError as exc:
        print(f"flux-broker: {exc.strerror}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        rc = 130
    finally:
        if created_rundir:
            shutil.rmtree(created_rundir, ignore_errors=True)
    return rc


def _limit_malloc_arenas() -> None:
    """At most two glibc malloc arenas: each thread (KVS writer, shell spawners) would
    otherwise get its own, and memory freed in one is never reused by another."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc


def _profiled(broker, path: str) -> int:
    """Run the broker under cProfile (a developer's aid: FLUX_BROKER_PROFILE=PATH
    writes pstats to PATH.<rank> at exit)."""
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(asyncio.run, broker.run())
    finally:
        prof.dump_stats(f"{path}.{broker.rank}")


def _traced(broker, path: str) -> int:
    """Run the broker under tracemalloc (a developer's aid: FLUX_BROKER_TRACEMALLOC=PATH
    writes the live allocations by line to PATH.<rank> at exit, before the stop frees them)."""
    import tracemalloc

    nframes = int(os.environ.get("FLUX_BROKER_TRACEMALLOC_FRAMES", "1"))
    tracemalloc.start(nframes)

    async def run() -> int:
        def dump() -> None:
            import gc
            if os.environ.get("FLUX_BROKER_TRACEMALLOC_GC"):
                print("gc collected", gc.collect(), file=sys.stderr)
            stats = tracemalloc.take_snapshot().statistics(
                "lineno" if nframes == 1 else "traceback")
            with open(f"{path}.{broker.rank}", "w") as f:
                f.write(f"total traced {tracemalloc.get_traced_memory()}\n")
                for st in stats[:60]:
                    where = " <- ".join(str(fr) for fr in st.traceback)
                    f.write(f"{st.size / 1e6:8.2f} MB {st.count:9d} {where}\n")

        orig = broker.shutdown

        async def shutdown(rc: int = 0) -> None:
            if not broker.shutdown_started:
                dump()
            await orig(rc)

        broker.shutdown = shutdown
        return await broker.run()

    return asyncio.run(run())


if __name__ == "__main__":
    from flux.core.util.fastexit import exit_now

    exit_now(main())
