"""`flux plugins list [-g GROUP]`: installed plugins, their distribution, and whether they load."""

from __future__ import annotations

from flux.cmd.util import Parser, cli


@cli("flux-plugins")
def main(argv: list[str]) -> int:
    from flux.core.hookspecs import ALL_GROUPS
    from flux.core.plugins import list_plugins

    p = Parser("flux plugins")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="list installed plugins")
    ls.add_argument("-g", "--group", action="append", help="only this entry-point group")
    sub.add_parser("groups", help="list the extension points")
    args = p.parse_args(argv)
    if args.cmd == "groups":
        for g, what in ALL_GROUPS.items():
            print(f"{g:<22} {what}")
        return 0
    for g in args.group or []:
        if g not in ALL_GROUPS:
            raise ValueError(f"unknown group '{g}' (groups: {', '.join(ALL_GROUPS)})")
    recs = list_plugins(args.group)
    rows = [("GROUP", "NAME", "DISTRIBUTION", "VERSION", "LOADED")]
    for r in recs:
        rows.append((r.group, r.name, r.distribution, r.version, "yes" if r.loaded else f"no: {r.error}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0 if all(r.loaded for r in recs) else 1
