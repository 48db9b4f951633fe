"""`flux logger [--severity=LEVEL] [--appname=NAME] MESSAGE...`: add to the broker log."""

from __future__ import annotations

from flux.cmd.util import Parser, cli, open_handle
from flux.core.broker.log import level_number


@cli("flux-logger")
def main(argv: list[str]) -> int:
    p = Parser("flux logger")
    p.add_argument("-s", "--severity", default="notice", help="syslog level name or number")
    p.add_argument("-n", "--appname", default="logger")
    p.add_argument("message", nargs="+")
    args = p.parse_args(argv)
    level = level_number(args.severity)
    if not 0 <= level <= 7:
        raise ValueError(f"severity {args.severity} is not 0-7")
    h = open_handle("flux-logger")
    h.rpc("log.append", {"level": level, "appname": args.appname,
                         "message": " ".join(args.message)}).get()
    return 0
