"""`flux shutdown`: stop the instance (rank 0 shuts every broker down)."""

from __future__ import annotations

from flux.cmd.util import Parser, cli, open_handle


@cli("flux-shutdown")
def main(argv: list[str]) -> int:
    p = Parser("flux shutdown")
    p.add_argument("--exitcode", type=int, default=0)
    args = p.parse_args(argv)
    open_handle("flux-shutdown").rpc("broker.shutdown", {"exitcode": args.exitcode}, nodeid=0).get()
    return 0
