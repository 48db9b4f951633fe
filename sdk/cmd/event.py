"""`flux event pub TOPIC [JSON]`, `flux event sub [-c N] [TOPIC...]`."""

from __future__ import annotations

import json

from flux.cmd.util import Parser, cli, open_handle


@cli("flux-event")
def main(argv: list[str]) -> int:
    p = Parser("flux event")
    sub = p.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("pub", help="publish an event")
    pub.add_argument("-p", "--private", action="store_true")
    pub.add_argument("-r", "--raw", action="store_true", help="payload is a raw string")
    pub.add_argument("topic")
    pub.add_argument("payload", nargs="?")
    s = sub.add_parser("sub", help="print events as they arrive")
    s.add_argument("-c", "--count", type=int, default=0)
    s.add_argument("-r", "--raw", action="store_true")
    s.add_argument("topics", nargs="*")
    args = p.parse_args(argv)
    h = open_handle("flux-event")
    if args.cmd == "pub":
        payload = None
        if args.payload is not None:
            if args.raw:
                payload = args.payload.encode()
            else:
                try:
                    payload = json.loads(args.payload)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"payload is not valid JSON: {exc}") from None
        h.event_send(args.topic, payload, private=args.private)
        return 0
    topics = args.topics or [""]
    for t in topics:
        h.event_subscribe(t)
    n = 0
    while args.count == 0 or n < args.count:
        ev = h.event_recv()
        s = ev.payload_str
        print(ev.topic if s is None else f"{ev.topic}\t{s}", flush=True)
        n += 1
    return 0
