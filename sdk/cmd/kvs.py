"""`flux kvs`: read, write, list and watch the KVS (flux-kvs(1), SPEC 10.5).

Every subcommand takes `-N NS`; the namespace defaults to `$FLUX_KVS_NAMESPACE`, else
`primary`. Errors print `flux-kvs: KEY: <reason>` and exit 1.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import time
from typing import Any

import flux.kvs as kvs
from flux.cmd.util import Parser, cli, open_handle
from flux.core.errors import FluxError
from flux.core.kvs import treeobj as T

PROG = "flux-kvs"
_PATH_ERRORS = (errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.ELOOP)


def _keyerr(key: str, exc: OSError) -> OSError:
    """`KEY: No such file or directory` style errors, like flux-core's log_err_exit."""
    if exc.errno in _PATH_ERRORS:
        return FluxError(exc.errno, f"{key}: {os.strerror(exc.errno)}")
    return exc


def _lookup(h, key: str, ns: str | None, flags: int = 0, at: dict | None = None) -> dict:
    T.normalize_key(key)
    p: dict = {"key": key, "namespace": kvs.default_namespace(ns), "flags": flags}
    if at is not None:
        p["rootdir"] = at
    try:
        return h.rpc("kvs.lookup", p).get()["val"]
    except OSError as exc:
        raise _keyerr(key, exc) from None


def _out() -> Any:
    return sys.stdout.buffer


def _write(data: bytes) -> None:
    _out().write(data)


def _commit(h, ops: list, ns: str | None, flags: int = 0) -> dict:
    return h.rpc("kvs.commit", {"namespace": kvs.default_namespace(ns), "flags": flags,
                                "ops": ops}).get()


def _print_commit_result(h, args, ns: str | None) -> None:
    """-O: the root tree object after the commit; -s: its sequence number."""
    if getattr(args, "treeobj_root", False) or getattr(args, "sequence", False):
        root = kvs.getroot(h, ns)
        if args.treeobj_root:
            print(_dumps(T.dirref(root["rootref"])))
        else:
            print(root["rootseq"])


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _window_width(args) -> int:
    """-w COLS, else the terminal's width, else $COLUMNS, else 80 (0 = unlimited)."""
    w = getattr(args, "width", None)
    if w is not None and w >= 0:
        return w
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    s = os.environ.get("COLUMNS")
    if s and s.isdigit():
        return int(s)
    return 80


def _parse_at(s: str | None) -> dict | None:
    if s is None:
        return None
    try:
        obj = json.loads(s)
    except ValueError:
        raise ValueError(f"--at: {s!r} is not a JSON tree object") from None
    T.check(obj, "--at")
    return obj


# ---------------------------------------------------------------------- get
def _print_val(key: str, obj: dict, args) -> None:
    if args.treeobj:
        if args.label:
            _write(f"{key}=".encode())
        _write((_dumps(obj) + "\n").encode())
        return
    if obj.get("type") != "val":
        raise FluxError(errno.EINVAL, f"{key}: unexpected tree object type {obj.get('type')}")
    data = T.decode_val(obj)
    if args.label:
        _write(f"{key}=".encode())
    if args.raw:
        _write(data)
    elif data:
        _write(data + b"\n")
    _out().flush()


def _watch_flags(args) -> int:
    flags = T.TREEOBJ if args.treeobj else 0
    if args.watch:
        flags |= T.WATCH
    if args.waitcreate:
        flags |= T.WAITCREATE
    if args.uniq:
        flags |= T.WATCH_UNIQ
    if args.append:
        flags |= T.WATCH_APPEND
    if args.full:
        flags |= T.WATCH_FULL
    return flags


def _get_watch(h, key: str, args) -> None:
    flags = _watch_flags(args)
    f = kvs.watch(h, key, args.namespace, flags)
    count = 0
    canceled = False
    while True:
        try:
            resp = f.get()
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return
            raise _keyerr(key, exc) from None
        f.reset()
        if not flags & T.WATCH:
            _print_val(key, resp["val"], args)
            return
        if canceled:
            continue
        _print_val(key, resp["val"], args)
        count += 1
        if args.count and count >= args.count:
            f.cancel()  # answered by ENODATA, which ends the loop
            canceled = True


def cmd_get(h, args) -> int:
    if args.count is not None and args.count < 0:
        raise ValueError("--count must be >= 0")
    if args.watch or args.waitcreate or args.uniq or args.append or args.full or args.count:
        if (args.uniq or args.append or args.full or args.count) and not args.watch:
            raise ValueError("--uniq, --append, --full and --count require --watch")
        if args.at:
            raise ValueError("--at cannot be combined with --watch or --waitcreate")
        if args.watch and len(args.keys) != 1:
            raise ValueError("--watch takes exactly one key")
        for key in args.keys:
            _get_watch(h, key, args)
        return 0
    at = _parse_at(args.at)
    flags = T.TREEOBJ if args.treeobj else 0
    for key in args.keys:
        _print_val(key, _lookup(h, key, args.namespace, flags, at), args)
    return 0


# ---------------------------------------------------------------------- put
def _read_stdin() -> bytes:
    return sys.stdin.buffer.read()


def cmd_put(h, args) -> int:
    if args.treeobj and args.append:
        raise ValueError("--append cannot be combined with --treeobj")
    ops = []
    for kv in args.pairs:
        key, sep, val = kv.partition("=")
        if not sep:
            raise ValueError("put: you must specify a value as key=value")
        T.normalize_key(key)
        if args.treeobj:
            text = _read_stdin().decode() if val == "-" else val
            try:
                obj = json.loads(text)
            except ValueError:
                raise FluxError(errno.EINVAL, f"{key}: value is not a JSON tree object") from None
            T.check(obj, f"{key}: tree object")
            ops.append({"key": key, "flags": 0, "dirent": obj})
            continue
        data = _read_stdin() if args.raw and val == "-" else val.encode()
        ops.append({"key": key, "flags": T.APPEND if args.append else 0, "dirent": T.val(data)})
    flags = (T.NO_MERGE if args.no_merge else 0) | (T.SYNC if args.sync else 0)
    _commit(h, ops, args.namespace, flags)
    _print_commit_result(h, args, args.namespace)
    return 0


# --------------------------------------------------------------- dir and ls
def _is_dir(obj: dict) -> bool:
    return obj.get("type") in ("dir", "dirref", "hdir")


def _truncate(line: str, maxcol: int) -> str:
    """flux-core's kv_printf: fit maxcol columns, stop at a newline or unprintable."""
    if maxcol <= 3:
        return line
    over = False
    if len(line) > maxcol - 3:
        line, over = line[:maxcol - 3], True
    i = line.find("\n")
    if i >= 0:
        line, over = line[:i], True
    for j, c in enumerate(line):
        if not c.isprintable():
            line, over = line[:j], True
            break
    return line + ("..." if over else "")


def _show_value(data: bytes) -> str:
    """A value as `dir` shows it: JSON strings unquoted, other JSON compact."""
    try:
        s = data.decode()
    except UnicodeDecodeError:
        return data.decode(errors="replace")
    try:
        o = json.loads(s)
    except ValueError:
        return s
    if isinstance(o, str):
        return o
    if o is None:
        return "nil"
    if isinstance(o, bool):
        return "true" if o else "false"
    return s if isinstance(o, int | float) else _dumps(o)


def _dump_dir(h, key: str, listing: dict, args, maxcol: int) -> None:
    prefix = "" if T.normalize_key(key)[0] == "" else T.normalize_key(key)[0] + "."
    for name in sorted(listing["data"]):
        ent = listing["data"][name]
        k = prefix + name
        t = ent.get("type")
        if t == "symlink":
            d = ent["data"]
            tgt = f"{d['namespace']}::{d['target']}" if d.get("namespace") else d["target"]
            print(f"{k} -> {tgt}")
        elif _is_dir(ent):
            if args.recursive:
                sub = _lookup(h, k, args.namespace, T.READDIR)
                if not sub["data"]:
                    print(f"{k}.")
                else:
                    _dump_dir(h, k, sub, args, maxcol)
            else:
                print(f"{k}.")
        elif args.directory:
            print(k)
        else:
            data = T.decode_val(ent) if t == "val" else T.decode_val(_lookup(h, k, args.namespace))
            print(_truncate(f"{k} = {_show_value(data)}", maxcol))


def cmd_dir(h, args) -> int:
    key = args.key or "."
    listing = _lookup(h, key, args.namespace, T.READDIR, _parse_at(args.at))
    _dump_dir(h, key, listing, args, _window_width(args))
    sys.stdout.flush()
    return 0


def _columns(names: list[str], width: int) -> None:
    """Print names in columns that fit width (flux-core's list_kvs_keys)."""
    if not names:
        return
    colw = max(len(n) for n in names) + 4
    col = 0
    line = ""
    for n in names:
        if width != 0 and col + colw > width and col > 0:
            print(line.rstrip())
            line, col = "", 0
        line += n.ljust(colw)
        col += colw
    if line:
        print(line.rstrip())


def _classify(h, key: str, ns: str | None) -> str:
    """'dir', 'link' or 'val' for a key named on the command line."""
    try:
        _lookup(h, key, ns, T.READLINK)
        return "link"
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    try:
        _lookup(h, key, ns, T.READDIR)
        return "dir"
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return "val"
        raise


def _list_dir(h, key: str, args, width: int, label: bool, vspace: bool) -> None:
    listing = _lookup(h, key, args.namespace, T.READDIR)
    if label:
        print(f"{chr(10) if vspace else ''}{key}:")
    names = []
    ents = listing["data"]
    for n in sorted(ents):
        suffix = ""
        if args.classify:
            if _is_dir(ents[n]):
                suffix = "."
            elif ents[n].get("type") == "symlink":
                suffix = "@"
        names.append(n + suffix)
    _columns(names, width)
    if args.recursive:
        base = T.normalize_key(key)[0]
        for n in sorted(ents):
            if _is_dir(ents[n]):
                _list_dir(h, f"{base}.{n}" if base else n, args, width, label, True)


def cmd_ls(h, args) -> int:
    width = 1 if args.one else _window_width(args)
    keys = args.keys or ["."]
    dirs, singles = [], []
    rc = 0
    for key in keys:
        norm, want_dir = T.normalize_key(key)
        try:
            kind = "dir" if norm == "" else _classify(h, key, args.namespace)
        except OSError as exc:
            sys.stderr.write(f"{exc.strerror}\n")
            rc = 1
            continue
        if want_dir and kind != "dir":
            sys.stderr.write(f"{key}: {os.strerror(errno.ENOTDIR)}\n")
            rc = 1
            continue
        if kind == "dir":
            if args.directory:
                singles.append(key + ("." if args.classify and not key.endswith(".") else ""))
            else:
                dirs.append(key)
        else:
            singles.append(key + ("@" if kind == "link" and args.classify else ""))
    singles.sort()
    dirs.sort()
    label = vspace = False
    if singles:
        _columns(singles, width)
        label = vspace = True
    if args.recursive or len(dirs) > 1:
        label = True
    for key in dirs:
        _list_dir(h, key, args, width, label, vspace)
        vspace = True
    return rc


# ----------------------------------------------------- unlink, link, mkdir...
def cmd_unlink(h, args) -> int:
    ops = []
    for key in args.keys:
        try:
            listing = _lookup(h, key, args.namespace, T.READDIR)
            if listing["data"] and not args.recursive:
                raise FluxError(errno.ENOTEMPTY, f"cannot unlink '{key}': "
                                                 f"{os.strerror(errno.ENOTEMPTY)}")
        except OSError as exc:
            if exc.errno == errno.ENOENT and args.force:
                continue
            if exc.errno != errno.ENOTDIR:
                raise
        ops.append({"key": key, "flags": 0, "dirent": None})
    if ops:
        _commit(h, ops, args.namespace)
    _print_commit_result(h, args, args.namespace)
    return 0


def cmd_link(h, args) -> int:
    T.normalize_key(args.target)
    T.normalize_key(args.linkname)
    if args.target_namespace:
        T.validate_namespace(args.target_namespace)
    _commit(h, [{"key": args.linkname, "flags": 0,
                 "dirent": T.symlink(args.target, args.target_namespace)}], args.namespace)
    _print_commit_result(h, args, args.namespace)
    return 0


def cmd_readlink(h, args) -> int:
    at = _parse_at(args.at)
    for key in args.keys:
        obj = _lookup(h, key, args.namespace, T.READLINK, at)
        target, ns = T.symlink_data(obj)
        if args.namespace_only:
            print(ns or "")
        elif args.key_only or not ns:
            print(target)
        else:
            print(f"{ns}::{target}")
    return 0


def cmd_mkdir(h, args) -> int:
    for key in args.keys:
        T.normalize_key(key)
    _commit(h, [{"key": k, "flags": 0, "dirent": T.dir_()} for k in args.keys], args.namespace)
    _print_commit_result(h, args, args.namespace)
    return 0


def _copy(h, args, move: bool) -> int:
    src_ns = args.src_namespace or args.namespace
    dst_ns = args.dst_namespace or args.namespace
    T.normalize_key(args.destination)
    obj = _lookup(h, args.source, src_ns, T.TREEOBJ)
    put = {"key": args.destination, "flags": 0, "dirent": obj}
    unlink = {"key": args.source, "flags": 0, "dirent": None}
    if move and kvs.default_namespace(src_ns) == kvs.default_namespace(dst_ns):
        _commit(h, [put, unlink], dst_ns)  # one atomic transaction
        return 0
    _commit(h, [put], dst_ns)
    if move:
        _commit(h, [unlink], src_ns)
    return 0


def cmd_copy(h, args) -> int:
    return _copy(h, args, False)


def cmd_move(h, args) -> int:
    return _copy(h, args, True)


def cmd_getroot(h, args) -> int:
    r = kvs.getroot(h, args.namespace)
    if args.owner:
        print(r["owner"])
    elif args.sequence:
        print(r["rootseq"])
    elif args.blobref:
        print(r["rootref"])
    else:
        print(_dumps(T.dirref(r["rootref"])))
    return 0


def cmd_version(h, args) -> int:
    print(kvs.getroot(h, args.namespace)["rootseq"])
    return 0


def cmd_wait(h, args) -> int:
    if args.version < 0:
        raise ValueError("wait: version must be >= 0")
    kvs.wait_version(h, args.version, args.namespace)
    return 0


def cmd_sync(h, args) -> int:
    r = h.rpc("kvs.sync", {"namespace": kvs.default_namespace(args.namespace)}).get()
    if args.verbose:
        print(r["rootseq"])
    return 0


def cmd_dropcache(h, args) -> int:
    kvs.dropcache(h)
    return 0


# ------------------------------------------------------------- namespaces
def cmd_namespace(h, args) -> int:
    if args.nscmd == "create":
        for name in args.names:
            T.validate_namespace(name)
            p: dict = {"namespace": name, "owner": args.owner if args.owner is not None
                       else os.getuid(), "flags": 0}
            if args.rootref:
                p["rootref"] = args.rootref
            try:
                h.rpc("kvs.namespace-create", p).get()
            except OSError as exc:
                raise FluxError(exc.errno, f"{name}: {exc.strerror}") from None
    elif args.nscmd == "remove":
        for name in args.names:
            try:
                kvs.namespace_remove(h, name)
            except OSError as exc:
                raise FluxError(exc.errno, f"{name}: {exc.strerror}") from None
    else:
        print("NAMESPACE                                 OWNER      FLAGS")
        for ns in h.rpc("kvs.namespace-list").get()["namespaces"]:
            print(f"{ns['namespace']:<36} {ns['owner']:>10} 0x{ns['flags']:08X}")
    return 0


# ---------------------------------------------------------------- eventlog
def format_event(entry: dict, fmt: str = "raw", t0: float | None = None) -> str:
    """An RFC 18 entry as `TIMESTAMP name k=v ...` (SPEC 4.1)."""
    ts = entry.get("timestamp", 0.0)
    if fmt == "iso":
        sec = int(ts)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{int((ts - sec) * 1e6):06d}Z"
    elif fmt == "offset":
        stamp = f"{ts - (t0 if t0 is not None else ts):f}"
    else:
        stamp = f"{ts:f}"
    parts = [stamp, str(entry.get("name", ""))]
    ctx = entry.get("context")
    if isinstance(ctx, dict):
        parts += [f"{k}={json.dumps(v, separators=(',', ':'), ensure_ascii=False)}"
                  for k, v in ctx.items()]
    return " ".join(parts)


class _EventStream:
    """Splits eventlog data into entries, across responses that end mid-line."""

    def __init__(self, key: str):
        self.key = key
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[dict, str]]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                return out
            line, self.buf = self.buf[:i], self.buf[i + 1:]
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except ValueError:
                raise FluxError(errno.EINVAL, f"{self.key}: not an RFC 18 eventlog "
                                              f"(bad line {line[:60]!r})") from None
            if not isinstance(e, dict) or "name" not in e or "timestamp" not in e:
                raise FluxError(errno.EINVAL, f"{self.key}: not an RFC 18 eventlog entry: "
                                              f"{line[:60]!r}")
            out.append((e, line.decode(errors="replace")))


class _EventlogReader:
    """Entries of an eventlog, following appends when watching (`close()` cancels)."""

    def __init__(self, h, key: str, ns: str | None, watch: bool, waitcreate: bool):
        self.key = key
        self.parser = _EventStream(key)
        self.queue: list[tuple[dict, str]] = []
        self.f = None
        self.ended = False
        self.watch = watch
        if not watch and not waitcreate:
            data = T.decode_val(_lookup(h, key, ns))
            self.queue = self.parser.feed(data if data.endswith(b"\n") else data + b"\n")
            self.ended = True
            return
        flags = (T.WATCH | T.WATCH_APPEND if watch else 0) | (T.WAITCREATE if waitcreate else 0)
        self.f = kvs.watch(h, key, ns, flags)

    def next(self, deadline: float | None = None) -> tuple[dict, str] | None:
        """The next entry, None at the end; TimeoutError once `deadline` passes."""
        while not self.queue:
            if self.ended:
                return None
            if deadline is not None:
                self.f.wait_for(max(0.0, deadline - time.monotonic()))
            try:
                resp = self.f.get()
            except OSError as exc:
                self.ended = True
                if exc.errno == errno.ENODATA:
                    return None
                raise _keyerr(self.key, exc) from None
            self.f.reset()
            self.queue = self.parser.feed(T.decode_val(resp["val"]))
            if not self.watch:
                self.ended = True
        return self.queue.pop(0)

    def close(self) -> None:
        if self.f is not None and self.watch and not self.ended:
            self.ended = True
            self.f.cancel()


def cmd_eventlog(h, args) -> int:
    if args.evcmd == "append":
        T.normalize_key(args.key)
        ctx = None
        if args.context:
            text = " ".join(args.context)
            try:
                ctx = json.loads(text)
            except ValueError:
                raise ValueError(f"context {text!r} is not a JSON object") from None
            if not isinstance(ctx, dict):
                raise ValueError(f"context {text!r} is not a JSON object")
        if not args.name or any(c.isspace() for c in args.name):
            raise ValueError(f"invalid event name {args.name!r}")
        e: dict = {"timestamp": args.timestamp if args.timestamp is not None else time.time(),
                   "name": args.name}
        if ctx:
            e["context"] = ctx
        line = json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n"
        _commit(h, [{"key": args.key, "flags": T.APPEND, "dirent": T.val(line.encode())}],
                args.namespace)
        return 0
    fmt = args.time_format
    t0 = None
    if args.evcmd == "get":
        if args.count < 0:
            raise ValueError("--count must be >= 0")
        reader = _EventlogReader(h, args.key, args.namespace, args.watch, args.waitcreate)
        n = 0
        try:
            while (item := reader.next()) is not None:
                entry, raw = item
                t0 = entry["timestamp"] if t0 is None else t0
                print(raw if args.unformatted else format_event(entry, fmt, t0), flush=True)
                n += 1
                if args.count and n >= args.count:
                    break
        finally:
            reader.close()
        return 0
    # wait-event
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    reader = _EventlogReader(h, args.key, args.namespace, True, args.waitcreate)
    try:
        while True:
            try:
                item = reader.next(deadline)
            except TimeoutError:
                raise FluxError(errno.ETIMEDOUT, f"wait-event timeout on event "
                                                 f"'{args.event}'") from None
            if item is None:
                raise FluxError(errno.ENODATA, f"{args.key}: event '{args.event}' never "
                                               "appeared")
            entry, raw = item
            t0 = entry["timestamp"] if t0 is None else t0
            text = raw if args.unformatted else format_event(entry, fmt, t0)
            if entry.get("name") == args.event:
                if not args.quiet:
                    print(text, flush=True)
                return 0
            if args.verbose:
                print(text, flush=True)
    finally:
        reader.close()


# ------------------------------------------------------------------ parser
def _ns_opt(p) -> None:
    p.add_argument("-N", "--namespace", metavar="NS",
                   help="namespace (default $FLUX_KVS_NAMESPACE or primary)")


def _commit_out_opts(p) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-O", "--treeobj-root", action="store_true",
                   help="print the root tree object after the commit")
    g.add_argument("-s", "--sequence", action="store_true",
                   help="print the root sequence number after the commit")


def _get_opts(p) -> None:
    _ns_opt(p)
    p.add_argument("-r", "--raw", action="store_true", help="print the value without a newline")
    p.add_argument("-t", "--treeobj", action="store_true", help="print the RFC 11 tree object")
    p.add_argument("-l", "--label", action="store_true", help="prefix values with 'KEY='")
    p.add_argument("-a", "--at", metavar="TREEOBJ", help="look up relative to a snapshot")
    p.add_argument("-W", "--waitcreate", action="store_true", help="wait for the key to appear")
    p.add_argument("-w", "--watch", action="store_true", help="print each new value")
    p.add_argument("-c", "--count", type=int, metavar="N", help="stop after N values")
    p.add_argument("-u", "--uniq", action="store_true", help="only values that changed")
    p.add_argument("-A", "--append", action="store_true", help="only newly appended data")
    p.add_argument("-f", "--full", action="store_true",
                   help="also notice indirect changes (e.g. a parent directory replaced)")
    p.add_argument("-S", "--stream", action="store_true", help="accepted for compatibility")
    p.add_argument("keys", nargs="+", metavar="KEY")


def build_parser() -> Parser:
    p = Parser("flux kvs", description="Operate on the Flux key-value store.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("get", help="print the values of keys")
    _get_opts(s)
    s = sub.add_parser("watch", help="same as 'get --watch'")
    _get_opts(s)

    s = sub.add_parser("put", help="store values (one atomic commit)")
    _ns_opt(s)
    s.add_argument("-r", "--raw", action="store_true", help="value '-' reads stdin (any bytes)")
    s.add_argument("-t", "--treeobj", action="store_true", help="values are RFC 11 tree objects")
    s.add_argument("-A", "--append", action="store_true", help="append to the values")
    s.add_argument("-n", "--no-merge", action="store_true", help="do not merge with other commits")
    s.add_argument("-S", "--sync", action="store_true", help="flush to stable storage")
    _commit_out_opts(s)
    s.add_argument("pairs", nargs="+", metavar="KEY=VALUE")

    for name, helptext in (("dir", "print keys and values of a directory"),):
        s = sub.add_parser(name, help=helptext)
        _ns_opt(s)
        s.add_argument("-R", "--recursive", action="store_true")
        s.add_argument("-d", "--directory", action="store_true", help="keys only, no values")
        s.add_argument("-w", "--width", type=int, metavar="COLS", help="truncate values (0: never)")
        s.add_argument("-a", "--at", metavar="TREEOBJ")
        s.add_argument("key", nargs="?")

    s = sub.add_parser("ls", help="list directories")
    _ns_opt(s)
    s.add_argument("-R", "--recursive", action="store_true")
    s.add_argument("-d", "--directory", action="store_true", help="list directories themselves")
    s.add_argument("-F", "--classify", action="store_true", help="mark dirs '.', links '@'")
    s.add_argument("-w", "--width", type=int, metavar="COLS")
    s.add_argument("-1", "--one", action="store_true", help="one entry per line")
    s.add_argument("keys", nargs="*", metavar="KEY")

    s = sub.add_parser("unlink", help="remove keys")
    _ns_opt(s)
    s.add_argument("-R", "--recursive", action="store_true", help="remove non-empty directories")
    s.add_argument("-f", "--force", action="store_true", help="ignore missing keys")
    _commit_out_opts(s)
    s.add_argument("keys", nargs="+", metavar="KEY")

    s = sub.add_parser("link", help="make LINKNAME a symlink to TARGET")
    _ns_opt(s)
    s.add_argument("-T", "--target-namespace", metavar="NS")
    _commit_out_opts(s)
    s.add_argument("target")
    s.add_argument("linkname")

    s = sub.add_parser("readlink", help="print symlink targets")
    _ns_opt(s)
    s.add_argument("-a", "--at", metavar="TREEOBJ")
    g = s.add_mutually_exclusive_group()
    g.add_argument("-o", "--namespace-only", action="store_true")
    g.add_argument("-k", "--key-only", action="store_true")
    s.add_argument("keys", nargs="+", metavar="KEY")

    s = sub.add_parser("mkdir", help="create empty directories")
    _ns_opt(s)
    _commit_out_opts(s)
    s.add_argument("keys", nargs="+", metavar="KEY")

    for name in ("copy", "move"):
        s = sub.add_parser(name, help=f"{name} a key or directory")
        _ns_opt(s)
        s.add_argument("-S", "--src-namespace", metavar="NS")
        s.add_argument("-D", "--dst-namespace", metavar="NS")
        s.add_argument("source")
        s.add_argument("destination")

    s = sub.add_parser("getroot", help="print the root reference")
    _ns_opt(s)
    g = s.add_mutually_exclusive_group()
    g.add_argument("-o", "--owner", action="store_true")
    g.add_argument("-s", "--sequence", action="store_true")
    g.add_argument("-b", "--blobref", action="store_true")

    s = sub.add_parser("version", help="print the root version")
    _ns_opt(s)
    s = sub.add_parser("wait", help="wait until the version reaches N")
    _ns_opt(s)
    s.add_argument("version", type=int)
    s = sub.add_parser("sync", help="wait until every commit is on disk")
    _ns_opt(s)
    s.add_argument("-v", "--verbose", action="store_true", help="print the version")
    s = sub.add_parser("dropcache", help="no-op (kept for compatibility)")
    s.add_argument("--all", action="store_true")

    s = sub.add_parser("namespace", help="create, remove, list namespaces")
    nsub = s.add_subparsers(dest="nscmd", required=True, metavar="SUBCOMMAND")
    c = nsub.add_parser("create")
    c.add_argument("-o", "--owner", type=int, metavar="UID")
    c.add_argument("-r", "--rootref", metavar="BLOBREF")
    c.add_argument("names", nargs="+", metavar="NS")
    c = nsub.add_parser("remove")
    c.add_argument("names", nargs="+", metavar="NS")
    nsub.add_parser("list")

    s = sub.add_parser("eventlog", help="RFC 18 eventlogs")
    esub = s.add_subparsers(dest="evcmd", required=True, metavar="SUBCOMMAND")
    c = esub.add_parser("append", help="append an event")
    _ns_opt(c)
    c.add_argument("-t", "--timestamp", type=float, metavar="SECONDS")
    c.add_argument("key")
    c.add_argument("name")
    c.add_argument("context", nargs="*", metavar="CONTEXT")
    for name in ("get", "wait-event"):
        c = esub.add_parser(name)
        _ns_opt(c)
        c.add_argument("-W", "--waitcreate", action="store_true")
        c.add_argument("-u", "--unformatted", action="store_true", help="raw RFC 18 lines")
        c.add_argument("-T", "--time-format", choices=["raw", "iso", "offset"], default="raw")
        c.add_argument("-H", "--human", dest="time_format", action="store_const", const="iso")
        if name == "get":
            c.add_argument("-w", "--watch", action="store_true")
            c.add_argument("-c", "--count", type=int, default=0, metavar="N")
        else:
            c.add_argument("-t", "--timeout", type=float, metavar="SECONDS")
            c.add_argument("-q", "--quiet", action="store_true")
            c.add_argument("-v", "--verbose", action="store_true")
        c.add_argument("key")
        if name == "wait-event":
            c.add_argument("event")
    return p


COMMANDS = {
    "get": cmd_get, "watch": cmd_get, "put": cmd_put, "dir": cmd_dir, "ls": cmd_ls,
    "unlink": cmd_unlink, "link": cmd_link, "readlink": cmd_readlink, "mkdir": cmd_mkdir,
    "copy": cmd_copy, "move": cmd_move, "getroot": cmd_getroot, "version": cmd_version,
    "wait": cmd_wait, "sync": cmd_sync, "dropcache": cmd_dropcache, "namespace": cmd_namespace,
    "eventlog": cmd_eventlog,
}


@cli(PROG)
def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "watch":
        args.watch = True
    ns = getattr(args, "namespace", None)
    if ns is not None:
        T.validate_namespace(ns)
    h = open_handle(PROG)
    return COMMANDS[args.cmd](h, args)
