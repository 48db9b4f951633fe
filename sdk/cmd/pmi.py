"""`flux pmi`: a standalone PMI client, to test a launcher's PMI service (our job
shell's, Slurm's) without starting an instance (flux-pmi(1)).

    [launcher] flux pmi [-v] [--method=simple|single] barrier [--count=N]
    [launcher] flux pmi [-v] [--method=simple|single] exchange [--count=N]
    [launcher] flux pmi [-v] [--method=simple|single] get [--ranks=IDSET] KEY

The client is the broker's own (flux.core.broker.boot.pmi). Rank 0 prints the
elapsed time of the timed part; `get` prints the value on the chosen ranks.
"""

from __future__ import annotations

import os
import sys
import time

from flux.cmd.util import Parser, die

PROG = "flux-pmi"


class Single:
    """The `single` method: a singleton of size 1 with a local key-value store."""

    def __init__(self):
        self.rank, self.size, self.kvs, self.pending = 0, 1, {}, {}

    def put(self, key: str, value: str) -> None:
        self.pending[key] = value

    def barrier(self) -> None:
        self.kvs.update(self.pending)
        self.pending = {}

    def get(self, key: str) -> str | None:
        return self.kvs.get(key)

    def finalize(self) -> None:
        pass


def build_parser() -> Parser:
    p = Parser("flux pmi", description="Standalone PMI client (test a PMI service).")
    p.add_argument("-v", "--verbose", action="count", default=0, help="trace PMI operations")
    p.add_argument("--method", default=None, metavar="URI",
                   help="simple or single (default: simple when PMI_FD is set, else single)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    b = sub.add_parser("barrier", help="time PMI barriers")
    b.add_argument("--count", type=int, default=1, metavar="N")
    e = sub.add_parser("exchange", help="time a put/barrier/get-all exchange")
    e.add_argument("--count", type=int, default=1, metavar="N")
    g = sub.add_parser("get", help="print a preset key")
    g.add_argument("--ranks", default="0", metavar="IDSET", help="ranks that print (or all)")
    g.add_argument("key")
    return p


def _client(method: str | None, verbose: int):
    from flux.core.broker.boot import has_pmi
    from flux.core.broker.boot.pmi import SimpleClient

    if method is None:
        method = "simple" if has_pmi() else "single"
    if method == "single":
        return Single()
    if method != "simple":
        raise ValueError(f"unknown PMI method '{method}' (simple, single)")
    env = dict(os.environ)
    if verbose:
        env["FLUX_PMI_DEBUG"] = "1"
    c = SimpleClient.from_env(env)
    c.init()
    return c


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "count", 1) < 1:
        return die(PROG, f"--count must be at least 1, not {args.count}")
    from flux.core.errors import FluxError

    try:
        c = _client(args.method, args.verbose)
        rc = _run(c, args)
        c.finalize()
        return rc
    except (FluxError, ValueError) as exc:
        return die(PROG, getattr(exc, "strerror", None) or str(exc))


def _run(c, args) -> int:
    if args.cmd == "get":
        from flux.core.util import idset

        ranks = None if args.ranks == "all" else set(idset.decode(args.ranks))
        value = c.get(args.key)
        if value is None:
            return die(PROG, f"{c.rank}: {args.key}: no such key")
        if ranks is None or c.rank in ranks:
            print(value, flush=True)
        return 0
    c.barrier()
    t0 = time.perf_counter()
    for i in range(args.count):
        if args.cmd == "barrier":
            c.barrier()
            continue
        c.put(f"flux-pmi.{i}.{c.rank}", f"{c.rank}-{i}")
        c.barrier()
        for r in range(c.size):
            want = f"{r}-{i}"
            got = c.get(f"flux-pmi.{i}.{r}")
            if got != want:
                return die(PROG, f"{c.rank}: rank {r}'s key: expected {want}, got {got}")
        c.barrier()
    if c.rank == 0:
        print(f"{PROG}: {args.cmd}: {args.count} x {c.size} ranks: "
              f"{time.perf_counter() - t0:.6f}s", file=sys.stdout, flush=True)
    return 0
