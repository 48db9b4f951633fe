"""The in-memory KVS tree of one namespace, and transactions applied to it.

Rank 0 keeps every namespace as a tree of `Dir`, `Val` and `Link` nodes; the disk copy
(store.py) is a flat table of rows keyed by full path, so a commit costs a few row
writes instead of rewriting hashed directories. RFC 11 tree objects are produced on
demand: directory hashes are cached per node and cleared along the path a commit
writes, so `getroot` and directory listings rehash only what changed.

A `Txn` applies ops in place and records an undo log (so a failing op, or a failed
disk flush, leaves nothing half-applied) and the row changes to persist.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from flux.core.errors import FluxError
from flux.core.kvs import treeobj as T

MISSING = object()
SYMLINK_MAX = 10  # hops before ELOOP (flux-core's limit)
INLINE_MAX = 72  # values up to this size appear inline ("val") in hashed directories
EVICT_MIN = 512  # values this large leave memory once on disk (see Val)
COLLAPSE_CHUNKS = 256  # join an appended value's chunks in memory beyond this many

# row types on disk
ROW_VAL, ROW_DIR, ROW_LINK = 0, 1, 2
# effect kinds (store.py turns them into SQL)
DEL, DELSUB, INS = 0, 1, 2


def err(code: int, key: str, text: str | None = None) -> FluxError:
    return FluxError(code, f"{key or '.'}: {text or os.strerror(code)}")


class Val:
    """A value: a list of chunks (one per put or append) so appends never copy.

    A value that is on disk may be evicted from memory (`chunks` None; `src`, a
    (loader, namespace) pair shared by the namespace's values, and `loc`, its key, say
    how to read it back): the KVS keeps every job's jobspec, J, R and eventlog, which
    would otherwise make the broker's memory grow with the number of jobs.
    """

    __slots__ = ("chunks", "size", "nseq", "ref", "loc", "src")

    def __init__(self, chunks: list[bytes], nseq: int | None = None):
        self.chunks: list[bytes] | None = chunks
        self.size = sum(map(len, chunks))
        self.nseq = len(chunks) if nseq is None else nseq  # next chunk row number on disk
        self.ref: str | None = None  # cached blobref of the whole value
        self.loc: str | None = None  # the key while evicted
        self.src: tuple[Callable[[str, str], bytes], str] | None = None

    def evict(self, src: tuple[Callable[[str, str], bytes], str], key: str) -> None:
        """Drop the bytes from memory; `src` (loader, namespace) reads them back on demand."""
        self.chunks = None
        self.src = src
        self.loc = key

    def _reload(self) -> list[bytes]:
        """Bring an evicted value back into memory (before it changes)."""
        if self.chunks is None:
            loader, ns = self.src
            self.chunks = [loader(ns, self.loc)]
            self.loc = self.src = None
        return self.chunks

    def data(self) -> bytes:
        chunks = self.chunks
        if chunks is None:
            loader, ns = self.src
            return loader(ns, self.loc)  # not kept: reads of old values are rare
        if len(chunks) == 1:
            return chunks[0]
        joined = b"".join(chunks)
        self.chunks = [joined]
        return joined

    def tail(self, offset: int) -> bytes:
        """Bytes from `offset` to the end, without joining the whole value."""
        need = self.size - offset
        if need <= 0:
            return b""
        if self.chunks is None:
            return self.data()[offset:]
        parts, got = [], 0
        for c in reversed(self.chunks):
            parts.append(c)
            got += len(c)
            if got >= need:
                break
        parts.reverse()
        b = b"".join(parts)
        return b[len(b) - need:]

    def append(self, data: bytes) -> None:
        self._reload().append(data)
        self.size += len(data)
        self.nseq += 1
        self.ref = None
        if len(self.chunks) > COLLAPSE_CHUNKS:
            self.data()

    def truncate(self, size: int, nseq: int) -> None:
        self.chunks = [self.data()[:size]]
        self.loc = self.src = None
        self.size = size
        self.nseq = nseq
        self.ref = None

    def copy(self) -> Val:
        if self.chunks is None:
            return Val([self.data()])
        return Val(list(self.chunks))


class Dir:
    __slots__ = ("entries", "hash")

    def __init__(self, entries: dict | None = None):
        self.entries: dict[str, Any] = entries if entries is not None else {}
        self.hash: str | None = None


class Link:
    __slots__ = ("target", "namespace")

    def __init__(self, target: str, namespace: str | None = None):
        self.target = target
        self.namespace = namespace

    def row(self) -> bytes:
        d = {"target": self.target}
        if self.namespace:
            d["namespace"] = self.namespace
        return orjson.dumps(d)


class Namespace:
    __slots__ = ("name", "owner", "flags", "rootseq", "root")

    def __init__(self, name: str, owner: int, flags: int = 0, rootseq: int = 0,
                 root: Dir | None = None):
        self.name = name
        self.owner = owner
        self.flags = flags
        self.rootseq = rootseq
        self.root = root if root is not None else Dir()


def deep_copy(node):
    t = type(node)
    if t is Val:
        return node.copy()
    if t is Dir:
        return Dir({k: deep_copy(v) for k, v in node.entries.items()})
    return Link(node.target, node.namespace)


def depth(node) -> int:
    if type(node) is not Dir or not node.entries:
        return 0
    return 1 + max(depth(c) for c in node.entries.values())


def split(key: str) -> list[str]:
    return [p for p in key.split(".") if p]


# -- RFC 11 views --------------------------------------------------------------
class Hasher:
    """Blobrefs (`sha1-<hex>`) with the algorithm named by `content.hash`."""

    def __init__(self, algo: str = "sha1"):
        if algo not in ("sha1", "sha256"):
            raise FluxError(errno.EINVAL, f"content.hash must be sha1 or sha256, not '{algo}'")
        self.algo = algo
        self._fn = getattr(hashlib, algo)

    def ref(self, blob: bytes) -> str:
        return f"{self.algo}-{self._fn(blob).hexdigest()}"

    def entry(self, node) -> dict:
        """The tree object naming `node` inside a hashed directory."""
        t = type(node)
        if t is Val:
            if node.size <= INLINE_MAX:
                return T.val(node.data())
            # one blob for the whole value, so the hash does not depend on how the value
            # was split into appends (computed lazily, cached until the next append)
            if node.ref is None:
                node.ref = self.ref(node.data())
            return T.valref([node.ref])
        if t is Dir:
            return T.dirref(self.dir_ref(node))
        return T.symlink(node.target, node.namespace)

    def dir_ref(self, d: Dir) -> str:
        if d.hash is None:
            blob = orjson.dumps(self.listing(d), option=orjson.OPT_SORT_KEYS)
            d.hash = self.ref(blob)
        return d.hash

    def listing(self, d: Dir) -> dict:
        """A directory with its entries as references (what READDIR returns)."""
        return T.dir_({k: self.entry(v) for k, v in d.entries.items()})


def full_treeobj(node) -> dict:
    """A self-contained tree object: values inline, directories nested (TREEOBJ lookups)."""
    t = type(node)
    if t is Val:
        return T.val(node.data())
    if t is Dir:
        return T.dir_({k: full_treeobj(v) for k, v in node.entries.items()})
    return T.symlink(node.target, node.namespace)


class NodeBuilder:
    """Turns a tree object from a commit into nodes, checking it on the way."""

    def __init__(self, loader: Callable[[str], bytes] | None, max_value: int):
        self.loader = loader
        self.max_value = max_value

    def _load(self, ref: str, key: str) -> bytes:
        if self.loader is None:
            raise err(errno.ENOTSUP, key, "references to the content store are not allowed here")
        try:
            return self.loader(ref)
        except FluxError as exc:
            raise err(exc.errno, key, f"cannot load {ref}: {exc.strerror}") from None

    def build(self, obj: Any, key: str, depth: int):
        if depth > T.DEPTH_MAX:
            raise err(errno.EINVAL, key, f"directories nested deeper than {T.DEPTH_MAX} levels")
        t = T.check(obj, f"{key or '.'}: tree object")
        if t == "val":
            data = T.decode_val(obj, f"{key}: val")
            self.check_size(key, len(data))
            return Val([data])
        if t == "valref":
            chunks = [self._load(r, key) for r in T.refs_of(obj, f"{key}: valref")]
            self.check_size(key, sum(map(len, chunks)))
            return Val(chunks or [b""])
        if t == "symlink":
            target, ns = T.symlink_data(obj)
            return Link(target, ns)
        if t == "dirref":
            refs = T.refs_of(obj, f"{key}: dirref")
            if len(refs) != 1:
                raise err(errno.EINVAL, key, "dirref must hold exactly one blobref")
            try:
                inner = orjson.loads(self._load(refs[0], key))
            except orjson.JSONDecodeError:
                raise err(errno.EINVAL, key, f"{refs[0]} is not a JSON directory object") from None
            if not isinstance(inner, dict) or inner.get("type") != "dir":
                raise err(errno.EINVAL, key, f"{refs[0]} is not a directory object")
            return self.build(inner, key, depth)
        if t == "hdir":
            raise err(errno.ENOTSUP, key, "hdir tree objects are not implemented")
        data = obj["data"]
        if not isinstance(data, dict):
            raise err(errno.EINVAL, key, "dir data must be an object")
        entries = {}
        for name, child in data.items():
            if not name or "." in name:
                raise err(errno.EINVAL, key, f"invalid directory entry name {name!r}")
            entries[name] = self.build(child, f"{key}.{name}" if key else name, depth + 1)
        return Dir(entries)

    def check_size(self, key: str, n: int) -> None:
        if n > self.max_value:
            raise err(errno.EFBIG, key, f"value is {n} bytes, larger than the limit of "
                                        f"{self.max_value} bytes (kvs.max-value-size)")


# -- reading -----------------------------------------------------------------
def resolve(get_ns: Callable[[str], Namespace], nsname: str, key: str, follow_last: bool):
    """Walk `key` from the root of namespace `nsname`, following symlinks.

    Returns (node, namespace). `get_ns` does the access check of each namespace a
    symlink leads into. Intermediate links are always followed; the last one only if
    `follow_last`.
    """
    ns = get_ns(nsname)
    parts = split(key)
    node = ns.root
    hops = 0
    i = 0
    while i < len(parts):
        if type(node) is not Dir:
            raise err(errno.ENOTDIR, key)
        child = node.entries.get(parts[i])
        if child is None:
            raise err(errno.ENOENT, key)
        if type(child) is Link and (follow_last or i < len(parts) - 1):
            hops += 1
            if hops > SYMLINK_MAX:
                raise err(errno.ELOOP, key)
            if child.namespace and child.namespace != ns.name:
                ns = get_ns(child.namespace)
            parts = split(child.target) + parts[i + 1:]
            node = ns.root
            i = 0
            continue
        node = child
        i += 1
    return node, ns


# -- writing -----------------------------------------------------------------
class Txn:
    """Ops applied in place to one namespace, with an undo log.

    After apply, `effects` lists the row changes to persist, `keys` the keys that
    changed (as written and as resolved through symlinks) and `struct` the keys whose
    whole subtree may have changed (a directory or link was replaced).
    """

    __slots__ = ("ns", "builder", "undo", "effects", "keys", "struct", "evictable")

    def __init__(self, ns: Namespace, builder: NodeBuilder):
        self.ns = ns
        self.builder = builder
        self.undo: list = []
        self.effects: list[tuple] = []
        self.keys: set[str] = set()
        self.struct: set[str] = set()
        # (value, path, nseq): large new values and final appends, evicted once on disk
        # unless changed since
        self.evictable: list[tuple[Val, str, int]] = []

    def rollback(self) -> None:
        for u in reversed(self.undo):
            if type(u) is tuple:
                d, name, old = u
                if old is MISSING:
                    d.entries.pop(name, None)
                else:
                    d.entries[name] = old
                d.hash = None
            else:
                u()
        self.undo.clear()

    def _set(self, d: Dir, name: str, node) -> Any:
        old = d.entries.get(name, MISSING)
        self.undo.append((d, name, old))
        if node is None:
            d.entries.pop(name, None)
        else:
            if old is MISSING and type(node) is Val:
                # value names repeat in every job's directory (J, jobspec, eventlog, R):
                # one string each, not one per job
                name = sys.intern(name)
            d.entries[name] = node
        return old

    def _walk(self, key: str, create: bool):
        """(parent Dir, last name, resolved path) of `key`, following intermediate links
        within this namespace; None when `create` is false and the parent is missing."""
        ns = self.ns
        nsname = ns.name
        parts = split(key)
        if not parts:
            raise err(errno.EINVAL, ".", "the root directory cannot be replaced or removed")
        hops = 0
        while True:
            d = ns.root
            d.hash = None
            restarted = False
            for i in range(len(parts) - 1):
                name = parts[i]
                child = d.entries.get(name)
                tc = type(child)
                if tc is Dir:
                    d = child
                    d.hash = None
                    continue
                if tc is Link:
                    hops += 1
                    if hops > SYMLINK_MAX:
                        raise err(errno.ELOOP, key)
                    if child.namespace and child.namespace != nsname:
                        raise err(errno.EINVAL, key, f"cannot write through symlink "
                                                     f"{'.'.join(parts[:i + 1])} into namespace "
                                                     f"{child.namespace}")
                    parts = split(child.target) + parts[i + 1:]
                    if len(parts) > T.DEPTH_MAX:
                        raise err(errno.EINVAL, key, f"resolves to more than {T.DEPTH_MAX} "
                                                     "components")
                    restarted = True
                    break
                if not create:
                    return None
                # a missing or non-directory component becomes a directory (flux-core does this)
                path = ".".join(parts[:i + 1])
                new = Dir()
                self._set(d, name, new)
                if child is not None:
                    self.effects.append((DEL, nsname, path))
                    self.keys.add(path)
                self.effects.append((INS, nsname, path, 0, ROW_DIR, None))
                d = new
            if not restarted:
                return d, parts[-1], ".".join(parts)

    def _rows(self, path: str, node) -> None:
        nsname = self.ns.name
        t = type(node)
        if t is Val:
            chunks = node._reload()
            for i, c in enumerate(chunks):
                self.effects.append((INS, nsname, path, i, ROW_VAL, c))
            node.nseq = len(chunks)
            if node.size >= EVICT_MIN and len(chunks) == 1:
                self.evictable.append((node, path, node.nseq))
        elif t is Dir:
            self.effects.append((INS, nsname, path, 0, ROW_DIR, None))
            for k, v in node.entries.items():
                self._rows(f"{path}.{k}", v)
        else:
            self.effects.append((INS, nsname, path, 0, ROW_LINK, node.row()))

    def _replace(self, d: Dir, name: str, path: str, node) -> None:
        old = self._set(d, name, node)
        nsname = self.ns.name
        if old is not MISSING:
            self.effects.append((DEL, nsname, path))
            if type(old) is Dir:
                self.effects.append((DELSUB, nsname, path))
            if type(old) is not Val:
                self.struct.add(path)
        if node is not None:
            if type(node) is not Val:
                self.struct.add(path)
            self._rows(path, node)
        self.keys.add(path)

    def unlink(self, key: str, prune: bool = False) -> None:
        found = self._walk(key, False)
        if found is None:
            return
        d, name, path = found
        if name in d.entries:
            self.keys.add(key)
            self._replace(d, name, path, None)
            if prune:
                self._prune(path)

    def _prune(self, path: str) -> None:
        """Unlink the directories above `path` that it leaves empty, keeping the first
        component (a purged job's `job.XXXX.XXXX.XXXX` would otherwise stay, empty)."""
        parts = path.split(".")
        while len(parts) > 2:
            parts.pop()
            found = self._walk(".".join(parts), False)
            if found is None:
                return
            d, name, p = found
            node = d.entries.get(name)
            if type(node) is not Dir or node.entries:
                return
            self.keys.add(p)
            self._replace(d, name, p, None)

    def append(self, key: str, data: bytes) -> tuple[Val, str]:
        """Append to (or create) the value at key; returns it and its resolved path."""
        d, name, path = self._walk(key, True)
        self.keys.add(key)
        old = d.entries.get(name)
        if old is None:
            node = Val([data])
            self._replace(d, name, path, node)
            return node, path
        t = type(old)
        if t is Dir:
            raise err(errno.EISDIR, key, "cannot append to a directory")
        if t is Link:
            raise err(errno.EINVAL, key, "cannot append to a symlink")
        self.builder.check_size(key, old.size + len(data))
        self.undo.append(partial(old.truncate, old.size, old.nseq))
        self.effects.append((INS, self.ns.name, path, old.nseq, ROW_VAL, data))
        old.append(data)
        self.keys.add(path)
        return old, path

    def apply(self, op: Any) -> None:
        """Apply one {key, flags, dirent} op (dirent None unlinks).

        Internal callers may pass {key, flags, raw: bytes} to skip base64 for a value.
        """
        if not isinstance(op, dict):
            raise FluxError(errno.EPROTO, "each op must be an object {key, flags, dirent}")
        key, _ = T.normalize_key(op.get("key"))
        flags = op.get("flags", 0)
        if not isinstance(flags, int) or isinstance(flags, bool):
            raise FluxError(errno.EPROTO, f"{key}: op flags must be an integer")
        if flags & ~T.APPEND:
            raise err(errno.EINVAL, key, f"unknown op flags {flags:#x}")
        if not key:
            raise err(errno.EINVAL, ".", "the root directory cannot be replaced or removed")
        raw = op.get("raw")
        if raw is not None:
            if not isinstance(raw, bytes | bytearray):
                raise FluxError(errno.EPROTO, f"{key}: raw must be bytes")
            data = bytes(raw)
            self.builder.check_size(key, len(data))
            if flags & T.APPEND:
                node, path = self.append(key, data)
                if op.get("evict"):  # the writer's last append: evictable once on disk
                    self.evictable.append((node, path, node.nseq))
            else:
                self.put_node(key, Val([data]))
            return
        if "dirent" not in op:
            raise FluxError(errno.EPROTO, f"{key}: op has no 'dirent' (null to unlink)")
        dirent = op["dirent"]
        if dirent is None:
            if flags & T.APPEND:
                raise err(errno.EINVAL, key, "append needs a value")
            self.unlink(key, bool(op.get("prune")))  # prune: internal callers only
            return
        if flags & T.APPEND:
            if T.check(dirent, f"{key}: dirent") != "val":
                raise err(errno.EINVAL, key, "append needs a 'val' tree object")
            data = T.decode_val(dirent, f"{key}: val")
            self.builder.check_size(key, len(data))
            self.append(key, data)
            return
        self.put_node(key, self.builder.build(dirent, key, key.count(".") + 1))

    def put_node(self, key: str, node) -> None:
        d, name, path = self._walk(key, True)
        if type(node) is Dir and path.count(".") + 1 + depth(node) > T.DEPTH_MAX:
            raise err(errno.EINVAL, key, f"directories nested deeper than {T.DEPTH_MAX} levels")
        self.keys.add(key)
        self._replace(d, name, path, node)
