"""`flux uri [--local|--remote] [--wait] TARGET`: print the URI of an instance
(SPEC 6.6). TARGET is a job id (or a path of them, `ƒA/ƒB`), `jobid:...`,
`pid:PID`, `/` (the root of the tree), `..` (the parent), or a URI."""

from __future__ import annotations

import sys

PROG = "flux-uri"


def main(argv: list[str]) -> int:
    from flux.cmd.util import Parser
    from flux.uri import FluxURIResolver

    p = Parser("flux uri", usage="flux uri [OPTIONS] TARGET",
               description="Resolve TARGET to the URI of a Flux instance")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--remote", action="store_true", help="Return a remote (ssh://) URI")
    g.add_argument("--local", action="store_true", help="Return a local (local://) URI")
    p.add_argument("--wait", action="store_true",
                   help="Wait for the job's URI to be available (jobid targets)")
    p.add_argument("--list-schemes", action="store_true", help="List the supported schemes")
    p.add_argument("target", nargs="?", metavar="TARGET")
    args = p.parse_args(argv)
    resolver = FluxURIResolver()
    if args.list_schemes:
        for name, desc in sorted(resolver.plugins().items()):
            print(f"{name:<10} {desc}")
        return 0
    if not args.target:
        p.error("TARGET is required")
    target = args.target
    if args.wait:
        target += ("&" if "?" in target else "?") + "wait"
    try:
        uri = resolver.resolve(target)
        print(uri.remote if args.remote else uri.local if args.local else uri)
    except (ValueError, NotImplementedError) as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"{PROG}: {exc.strerror or exc}\n")
        return 1
    return 0
