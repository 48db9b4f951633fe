"""`flux getattr NAME`, `flux setattr NAME VALUE`, `flux lsattr [-v]`."""

from __future__ import annotations

from flux.cmd.util import Parser, cli, open_handle


@cli("flux-getattr")
def getattr_main(argv: list[str]) -> int:
    p = Parser("flux getattr")
    p.add_argument("name")
    args = p.parse_args(argv)
    print(open_handle("flux-getattr").attr_get(args.name))
    return 0


@cli("flux-setattr")
def setattr_main(argv: list[str]) -> int:
    p = Parser("flux setattr")
    p.add_argument("name")
    p.add_argument("value")
    args = p.parse_args(argv)
    open_handle("flux-setattr").attr_set(args.name, args.value)
    return 0


@cli("flux-lsattr")
def lsattr_main(argv: list[str]) -> int:
    p = Parser("flux lsattr")
    p.add_argument("-v", "--values", action="store_true", help="show values too")
    args = p.parse_args(argv)
    h = open_handle("flux-lsattr")
    names = h.rpc("attr.list").get()["names"]
    if not args.values:
        for n in names:
            print(n)
        return 0
    futs = [(n, h.rpc("attr.get", {"name": n})) for n in names]
    width = max((len(n) for n in names), default=0)
    for n, f in futs:
        try:
            v = f.get()["value"]
        except OSError:
            v = "-"
        print(f"{n:<{width}}  {v}")
    return 0
