"""`flux dmesg [-c] [-C] [-f] [-n] [-H]`: print the broker's log ring buffer."""

from __future__ import annotations

import errno

from flux.cmd.util import Parser, cli, open_handle
from flux.core.broker.log import format_entry
from flux.handle import RPC_STREAMING


@cli("flux-dmesg")
def main(argv: list[str]) -> int:
    p = Parser("flux dmesg")
    p.add_argument("-c", "--read-clear", action="store_true", help="print then clear")
    p.add_argument("-C", "--clear", action="store_true", help="clear only")
    p.add_argument("-f", "--follow", action="store_true", help="wait for new entries")
    p.add_argument("-n", "--new", action="store_true", help="only new entries (with -f)")
    p.add_argument("-H", "--human", action="store_true", help="local time stamps")
    args = p.parse_args(argv)
    h = open_handle("flux-dmesg")
    if not args.clear:
        f = h.rpc("log.dmesg", {"follow": args.follow, "nobacklog": args.new}, flags=RPC_STREAMING)
        while True:
            try:
                e = f.get()
            except OSError as exc:
                if exc.errno == errno.ENODATA:
                    break
                raise
            print(format_entry(e, human=args.human), flush=args.follow)
            f.reset()
    if args.clear or args.read_clear:
        h.rpc("log.clear").get()
    return 0
