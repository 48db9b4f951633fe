"""`flux account`: manage the accounting database.

By default every subcommand is an `accounting.*` RPC to the running instance (so a change
takes effect at once); with `-p/--path DB` it works on a database file directly (to
prepare one before the instance starts). Subcommands: create-db, add-bank, add-user,
delete-user, edit-user, view-user, list-users, list-banks, update-usage.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from flux.cmd.util import Parser, die

PROG = "flux-account"
DEFAULT_HALF_LIFE = 7 * 86400.0


class Remote:
    def __init__(self):
        import flux

        self.h = flux.Flux()

    def call(self, method: str, payload: dict) -> dict:
        import errno

        try:
            return self.h.rpc(f"accounting.{method}", payload, nodeid=0).get() or {}
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                raise OSError(exc.errno, "accounting is not configured on this instance"
                                         " (no [accounting] table)") from None
            raise


class Local:
    """The same calls, straight on a database file (no live job counts)."""

    def __init__(self, path: str, create: bool = False):
        from flux_accounting.db import Store

        self.store = Store(path, create=create)

    def call(self, method: str, p: dict) -> dict:
        from flux_accounting import views

        s = self.store
        if method == "view_user":
            return views.view_user(s, DEFAULT_HALF_LIFE, p.get("username"))
        if method == "list_users":
            return {"users": views.association_views(s, DEFAULT_HALF_LIFE)}
        if method == "list_banks":
            return {"banks": views.list_banks(s, DEFAULT_HALF_LIFE, p.get("inactive", False))}
        if method == "add_bank":
            s.add_bank(p["bank"], p.get("shares", 1), p.get("parent_bank"), p.get("priority", 0.0))
            return {}
        if method == "add_user":
            kw = {k: p[k] for k in ("userid", "shares", "max_running_jobs", "max_active_jobs",
                                    "queues") if p.get(k) is not None}
            return {"userid": s.add_user(p["username"], p["bank"], **kw)["userid"]}
        if method == "delete_user":
            s.delete_user(p["username"], p["bank"], p.get("force", False))
            return {}
        if method == "edit_user":
            return {"associations": len(s.edit_user(p["username"], p.get("bank"), p["changes"]))}
        if method == "update_usage":
            raise ValueError("update-usage needs the running instance (its half-life and"
                             " live jobs); run it without --path")
        raise ValueError(f"unknown call {method}")


def _table(rows: list[dict], fields: list[str]) -> str:
    cols = [[f.upper()] + [str(r.get(f, "")) for r in rows] for f in fields]
    widths = [max(len(c) for c in col) for col in cols]
    lines = []
    for i in range(len(rows) + 1):
        lines.append("  ".join(col[i].ljust(w) for col, w in zip(cols, widths, strict=True)).rstrip())
    return "\n".join(lines)


USER_FIELDS = ["username", "userid", "bank", "default_bank", "shares", "job_usage", "fairshare",
               "max_running_jobs", "max_active_jobs", "queues"]
LIVE_FIELDS = ["active_jobs", "running_jobs", "held_jobs"]
BANK_FIELDS = ["bank", "parent_bank", "shares", "priority", "job_usage"]


def _parser() -> Parser:
    p = Parser(PROG, description="Manage the accounting database (users, banks, usage)")
    p.add_argument("-p", "--path", metavar="DB",
                   help="work on this database file instead of the running instance")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    sub.add_parser("create-db", help="create an empty database (needs --path)")

    s = sub.add_parser("add-bank", help="add a bank")
    s.add_argument("bank")
    s.add_argument("shares", type=int)
    s.add_argument("--parent-bank", metavar="BANK", help="parent bank (all but the root need one)")
    s.add_argument("--priority", type=float, default=0.0, help="bank priority factor")

    s = sub.add_parser("add-user", help="add a user to a bank (an association)")
    s.add_argument("--username", required=True)
    s.add_argument("--bank", required=True)
    s.add_argument("--userid", type=int, help="default: looked up from the username")
    s.add_argument("--shares", type=int)
    s.add_argument("--max-running-jobs", type=int, metavar="N", help="0 = no limit (default 5)")
    s.add_argument("--max-active-jobs", type=int, metavar="N", help="0 = no limit (default 7)")
    s.add_argument("--queues", metavar="Q1,Q2", help="queues the user may use (default any)")

    s = sub.add_parser("delete-user", help="remove a user from a bank")
    s.add_argument("username")
    s.add_argument("bank")
    s.add_argument("--force", action="store_true", help="delete the row (default: deactivate)")

    s = sub.add_parser("edit-user", help="change a user's shares, limits, queues or default bank")
    s.add_argument("username")
    s.add_argument("--bank", help="only this association (default: all of the user's)")
    s.add_argument("--shares", type=int)
    s.add_argument("--max-running-jobs", type=int, metavar="N")
    s.add_argument("--max-active-jobs", type=int, metavar="N")
    s.add_argument("--queues", metavar="Q1,Q2")
    s.add_argument("--default-bank", metavar="BANK")

    s = sub.add_parser("view-user", help="show a user's associations")
    s.add_argument("username")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("list-users", help="list every association")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("list-banks", help="list banks")
    s.add_argument("--inactive", action="store_true", help="include deleted banks")
    s.add_argument("--json", action="store_true")

    sub.add_parser("update-usage", help="recompute decayed usage from the job records")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except OSError as exc:
        return die(PROG, exc.strerror or str(exc))
    except ValueError as exc:  # AccountingError from --path mode
        return die(PROG, str(exc))


def _run(args: Any) -> int:
    if args.cmd == "create-db":
        if not args.path:
            return die(PROG, "create-db needs --path DB")
        Local(args.path, create=True)
        return 0
    be = Local(args.path) if args.path else Remote()
    c = args.cmd
    if c == "add-bank":
        be.call("add_bank", {"bank": args.bank, "shares": args.shares,
                             "parent_bank": args.parent_bank, "priority": args.priority})
    elif c == "add-user":
        be.call("add_user", {"username": args.username, "bank": args.bank, "userid": args.userid,
                             "shares": args.shares, "max_running_jobs": args.max_running_jobs,
                             "max_active_jobs": args.max_active_jobs, "queues": args.queues})
    elif c == "delete-user":
        be.call("delete_user", {"username": args.username, "bank": args.bank, "force": args.force})
    elif c == "edit-user":
        changes = {k: v for k, v in (("shares", args.shares),
                                     ("max_running_jobs", args.max_running_jobs),
                                     ("max_active_jobs", args.max_active_jobs),
                                     ("queues", args.queues), ("default_bank", args.default_bank))
                   if v is not None}
        if not changes:
            return die(PROG, "edit-user: nothing to change (give --shares, --max-running-jobs,"
                             " --max-active-jobs, --queues or --default-bank)")
        payload: dict = {"username": args.username, "changes": changes}
        if args.bank:
            payload["bank"] = args.bank
        be.call("edit_user", payload)
    elif c == "view-user":
        r = be.call("view_user", {"username": args.username})
        if args.json:
            print(json.dumps(r))
        else:
            live = LIVE_FIELDS if r["associations"] and "active_jobs" in r["associations"][0] else []
            print(_table(r["associations"], USER_FIELDS + live))
    elif c == "list-users":
        r = be.call("list_users", {})
        if args.json:
            print(json.dumps(r["users"]))
        else:
            live = LIVE_FIELDS if r["users"] and "active_jobs" in r["users"][0] else []
            print(_table(r["users"], USER_FIELDS + live))
    elif c == "list-banks":
        r = be.call("list_banks", {"inactive": args.inactive})
        if args.json:
            print(json.dumps(r["banks"]))
        else:
            print(_table(r["banks"], BANK_FIELDS + (["active"] if args.inactive else [])))
    elif c == "update-usage":
        r = be.call("update_usage", {})
        print(f"usage recomputed for {r.get('associations', 0)} association(s)", file=sys.stderr)
    return 0
