"""`flux.kvs`: the KVS from Python, with the names of flux-core's bindings.

Writes are staged in a transaction and sent by `commit()`: `put(h, k, v)` stages in
a transaction kept on the handle, `KVSTxn` and `KVSDir` carry their own. Values are
stored as compact JSON, except `bytes`, which are stored raw; `get()` decodes JSON and
returns a str (or bytes) for a value that is not JSON.

The namespace of every call defaults to `$FLUX_KVS_NAMESPACE`, else `primary`.
"""

from __future__ import annotations

import collections.abc as abc
import errno
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from flux.core.errors import FluxError
from flux.core.kvs import treeobj as T
from flux.handle import RPC_STREAMING

__all__ = [
    "KVSDir", "KVSTxn", "commit", "commit_async", "dropcache", "exists", "fence", "get",
    "get_dir", "get_key_direct", "get_raw", "getroot", "isdir", "join", "lookup",
    "namespace_create", "namespace_list", "namespace_remove", "put", "put_mkdir",
    "put_symlink", "put_unlink", "wait_version", "walk", "watch",
]

_AUX = "flux.kvs.txn"


def default_namespace(namespace: str | None = None) -> str:
    return namespace or os.environ.get("FLUX_KVS_NAMESPACE") or T.PRIMARY


def decode_value(data: bytes) -> Any:
    """JSON if it parses, else str if UTF-8, else bytes; None for an empty value."""
    if not data:
        return None
    try:
        s = data.decode()
    except UnicodeDecodeError:
        return data
    try:
        return json.loads(s)
    except ValueError:
        return s


def encode_value(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"KVS value must be JSON-serializable or bytes: {exc}") from None


# -- reading ------------------------------------------------------------------
def lookup(flux_handle, key: str, namespace: str | None = None, flags: int = 0) -> dict:
    """The RFC 11 tree object at key (flags: READDIR, READLINK, TREEOBJ)."""
    T.normalize_key(key)
    p = {"key": key, "namespace": default_namespace(namespace), "flags": flags}
    return flux_handle.rpc("kvs.lookup", p).get()["val"]


def get_raw(flux_handle, key: str, namespace: str | None = None) -> bytes:
    """The value at key as bytes (EISDIR if it is a directory)."""
    obj = lookup(flux_handle, key, namespace)
    if obj.get("type") != "val":
        raise FluxError(errno.EPROTO, f"{key}: unexpected tree object type {obj.get('type')}")
    return T.decode_val(obj)


def get_key_direct(flux_handle, key: str, namespace: str | None = None) -> Any:
    return decode_value(get_raw(flux_handle, key, namespace))


def exists(flux_handle, key: str, namespace: str | None = None) -> bool:
    try:
        get_key_direct(flux_handle, key, namespace=namespace)
        return True
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        if err.errno == errno.EISDIR:
            return True
        raise


def isdir(flux_handle, key: str, namespace: str | None = None) -> bool:
    try:
        get_key_direct(flux_handle, key, namespace=namespace)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        if err.errno == errno.EISDIR:
            return True
        raise
    return False


def get_dir(flux_handle, key: str = ".", namespace: str | None = None, _kvstxn=None) -> KVSDir:
    return KVSDir(path=key, flux_handle=flux_handle, namespace=namespace, _kvstxn=_kvstxn)


def get(flux_handle, key: str, namespace: str | None = None, _kvstxn=None) -> Any:
    """The value at key (JSON decoded), or a KVSDir if key is a directory."""
    try:
        return get_key_direct(flux_handle, key, namespace=namespace)
    except OSError as err:
        if err.errno != errno.EISDIR:
            raise
    return get_dir(flux_handle, key, namespace=namespace, _kvstxn=_kvstxn)


def getroot(flux_handle, namespace: str | None = None) -> dict:
    """{namespace, rootref, rootseq, owner, flags} of a namespace."""
    return flux_handle.rpc("kvs.getroot", {"namespace": default_namespace(namespace)}).get()


def wait_version(flux_handle, version: int, namespace: str | None = None) -> int:
    """Block until the namespace's version (rootseq) reaches `version`."""
    p = {"rootseq": version, "namespace": default_namespace(namespace)}
    return flux_handle.rpc("kvs.wait-version", p).get()["rootseq"]


def watch(flux_handle, key: str, namespace: str | None = None, flags: int = T.WATCH):
    """Start a kvs-watch.lookup stream; each `get()` of the future is a response
    ({val: treeobj, ...}); `reset()` moves to the next; `cancel()` ends it (ENODATA)."""
    T.normalize_key(key)
    p = {"key": key, "namespace": default_namespace(namespace), "flags": flags}
    return flux_handle.rpc("kvs-watch.lookup", p,
                           flags=RPC_STREAMING if flags & T.WATCH else 0)


# -- writing ------------------------------------------------------------------
def _put_op(key: str, value: Any, flags: int = 0) -> dict:
    T.normalize_key(key)
    return {"key": key, "flags": flags, "dirent": T.val(encode_value(value))}


def _handle_txns(flux_handle) -> dict:
    aux = getattr(flux_handle, "aux", None)
    if aux is None:
        aux = flux_handle.aux = {}
    return aux.setdefault(_AUX, {})


def _get_kvstxn(flux_handle, _kvstxn, namespace: str | None = None) -> KVSTxn:
    if _kvstxn is not None:
        return _kvstxn
    txns = _handle_txns(flux_handle)
    txn = txns.get(namespace)
    if txn is None:
        txn = txns[namespace] = KVSTxn(flux_handle, namespace=namespace)
    return txn


def put(flux_handle, key: str, value: Any, _kvstxn=None, namespace: str | None = None) -> None:
    """Stage key=value in the handle's transaction (sent by commit())."""
    _get_kvstxn(flux_handle, _kvstxn, namespace).put(key, value)


def put_mkdir(flux_handle, key: str, _kvstxn=None, namespace: str | None = None) -> None:
    _get_kvstxn(flux_handle, _kvstxn, namespace).mkdir(key)


def put_unlink(flux_handle, key: str, _kvstxn=None, namespace: str | None = None) -> None:
    _get_kvstxn(flux_handle, _kvstxn, namespace).unlink(key)


def put_symlink(flux_handle, key: str, target: str, _kvstxn=None,
                namespace: str | None = None) -> None:
    _get_kvstxn(flux_handle, _kvstxn, namespace).symlink(key, target)


def _commit_rpc(flux_handle, ops: list, flags: int, namespace: str | None):
    return flux_handle.rpc("kvs.commit", {"namespace": default_namespace(namespace),
                                          "flags": flags, "ops": ops})


def _take_handle_txn(flux_handle, namespace: str | None) -> KVSTxn | None:
    txns = _handle_txns(flux_handle)
    txn = txns.pop(namespace, None)
    if txn is None and namespace is not None:
        txn = txns.pop(None, None)  # flux-core: put() without a namespace, commit() with one
    return txn


def commit(flux_handle, flags: int = 0, namespace: str | None = None, _kvstxn=None) -> None:
    """Commit the handle's staged changes (or `_kvstxn`) atomically."""
    if _kvstxn is None:
        txn = _take_handle_txn(flux_handle, namespace)
        if txn is None:
            return
        ops = txn.ops
    else:
        ops = _kvstxn.ops if isinstance(_kvstxn, KVSTxn) else list(_kvstxn)
    _commit_rpc(flux_handle, ops, flags, namespace).get()


def commit_async(flux_handle, flags: int = 0, namespace: str | None = None, _kvstxn=None):
    """Like commit() but returns the RPC future ({namespace, rootseq} when done)."""
    if _kvstxn is None:
        txn = _take_handle_txn(flux_handle, namespace)
        ops = txn.ops if txn is not None else []
    else:
        ops = _kvstxn.ops if isinstance(_kvstxn, KVSTxn) else list(_kvstxn)
    return _commit_rpc(flux_handle, ops, flags, namespace)


def fence(flux_handle, name: str, nprocs: int, flags: int = 0, namespace: str | None = None,
          _kvstxn=None) -> dict:
    """A collective commit: returns once `nprocs` callers have fenced under `name`;
    their transactions are applied together, atomically."""
    if _kvstxn is None:
        txn = _take_handle_txn(flux_handle, namespace)
        ops = txn.ops if txn is not None else []
    else:
        ops = _kvstxn.ops if isinstance(_kvstxn, KVSTxn) else list(_kvstxn)
    p = {"name": name, "nprocs": nprocs, "namespace": default_namespace(namespace),
         "flags": flags, "ops": ops}
    return flux_handle.rpc("kvs.fence", p).get()


def namespace_create(flux_handle, namespace: str, owner: int | None = None, flags: int = 0) -> None:
    T.validate_namespace(namespace)
    p = {"namespace": namespace, "owner": os.getuid() if owner is None else owner, "flags": flags}
    flux_handle.rpc("kvs.namespace-create", p).get()


def namespace_remove(flux_handle, namespace: str) -> None:
    flux_handle.rpc("kvs.namespace-remove", {"namespace": namespace}).get()


def namespace_list(flux_handle) -> list[str]:
    return [ns["namespace"] for ns in flux_handle.rpc("kvs.namespace-list").get()["namespaces"]]


def dropcache(flux_handle) -> None:
    """Kept for compatibility: rank 0 holds the KVS in memory, there is no cache to drop."""
    flux_handle.rpc("kvs.dropcache", {}).get()


class KVSTxn:
    """Staged changes, sent atomically by commit(). As a context manager it commits on exit.

    with KVSTxn(h, "basedir") as kt:
        kt.put("a", 1)
    """

    def __init__(self, flux_handle=None, path: str = ".", namespace: str | None = None):
        self.fhdl = flux_handle
        self.path = path
        self._path = "" if not path or path == "." else (path if path[-1] == "." else path + ".")
        self.namespace = namespace
        self.ops: list[dict] = []

    def is_empty(self) -> bool:
        return not self.ops

    def put(self, key: str, value: Any) -> None:
        self.ops.append(_put_op(self._path + key, value))

    def put_raw(self, key: str, data: bytes) -> None:
        self.ops.append(_put_op(self._path + key, bytes(data)))

    def append(self, key: str, value: Any) -> None:
        """Append to the value at key (bytes as is, str as UTF-8)."""
        data = value.encode() if isinstance(value, str) else encode_value(value)
        self.ops.append(_put_op(self._path + key, data, T.APPEND))

    def mkdir(self, key: str) -> None:
        T.normalize_key(self._path + key)
        self.ops.append({"key": self._path + key, "flags": 0, "dirent": T.dir_()})

    def unlink(self, key: str) -> None:
        T.normalize_key(self._path + key)
        self.ops.append({"key": self._path + key, "flags": 0, "dirent": None})

    def symlink(self, key: str, target: str, namespace: str | None = None) -> None:
        T.normalize_key(self._path + key)
        self.ops.append({"key": self._path + key, "flags": 0,
                         "dirent": T.symlink(target, namespace)})

    def put_treeobj(self, key: str, obj: dict) -> None:
        T.normalize_key(self._path + key)
        self.ops.append({"key": self._path + key, "flags": 0, "dirent": obj})

    def clear(self) -> None:
        self.ops = []

    def commit(self, flags: int = 0) -> None:
        if not self.ops:
            return
        try:
            commit(self.fhdl, flags=flags, namespace=self.namespace, _kvstxn=self)
        finally:
            self.clear()

    def commit_async(self, flags: int = 0):
        f = commit_async(self.fhdl, flags=flags, namespace=self.namespace, _kvstxn=self)
        self.clear()
        return f

    def __enter__(self) -> KVSTxn:
        return self

    def __exit__(self, *exc) -> bool:
        self.commit()
        return False


def _is_dir(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") in ("dir", "dirref", "hdir")


class KVSDir(abc.MutableMapping):
    """A KVS directory as a mapping: reads look keys up, writes are staged until commit().

    Subdirectories reached through [] share this directory's transaction, so one
    commit() sends every change.
    """

    def __init__(self, flux_handle=None, path: str = ".", handle: Any = None,
                 namespace: str | None = None, _kvstxn: KVSTxn | None = None):
        if flux_handle is None and handle is None:
            raise ValueError("flux_handle must be a valid Flux object or handle must be a "
                             "directory tree object")
        self.fhdl = flux_handle
        self.path = path
        self._path = "" if not path or path == "." else (path if path[-1] == "." else path + ".")
        self.namespace = namespace
        if isinstance(handle, dict):
            listing = handle
        else:
            listing = lookup(flux_handle, path or ".", namespace, T.READDIR)
        self._entries: dict = dict(listing.get("data") or {})
        self.kvstxn = _kvstxn if _kvstxn is not None else KVSTxn(flux_handle, ".", namespace)

    def key_at(self, key: str) -> str:
        return self._path + key

    def exists(self, name: str) -> bool:
        return exists(self.fhdl, self._path + name, namespace=self.namespace)

    def __getitem__(self, key: str) -> Any:
        try:
            return get(self.fhdl, self.key_at(key), namespace=self.namespace, _kvstxn=self.kvstxn)
        except OSError:
            raise KeyError(f"{key} not found under directory {self.key_at('')}") from None

    def __setitem__(self, key: str, value: Any) -> None:
        self.kvstxn.put(self._path + key, value)

    def __delitem__(self, key: str) -> None:
        self.kvstxn.unlink(self._path + key)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def commit(self, flags: int = 0) -> None:
        try:
            self.kvstxn.commit(flags=flags)
        finally:
            self.kvstxn.clear()

    def commit_async(self, flags: int = 0):
        f = self.kvstxn.commit_async(flags=flags)
        self.kvstxn.clear()
        return f

    def fill(self, contents: Mapping[str, Any]) -> None:
        """Store every key of contents here (`a.b` makes subdirectories), then commit."""
        if contents is None:
            raise ValueError("contents must be non-None")
        try:
            for key, val in contents.items():
                self[key] = val
        finally:
            self.commit()

    def mkdir(self, key: str, contents: Mapping[str, Any] | None = None) -> None:
        self.kvstxn.mkdir(self._path + key)
        self.commit()
        if contents is not None:
            KVSDir(self.fhdl, self._path + key, namespace=self.namespace).fill(contents)

    def files(self) -> Iterator[str]:
        for k in self:
            if not _is_dir(self._entries[k]):
                yield k

    def directories(self) -> Iterator[str]:
        for k in self:
            if _is_dir(self._entries[k]):
                yield k

    def list_all(self) -> tuple[list[str], list[str]]:
        files, dirs = [], []
        for k in self:
            (dirs if _is_dir(self._entries[k]) else files).append(k)
        return files, dirs

    def __enter__(self) -> KVSDir:
        return self

    def __exit__(self, *exc) -> bool:
        self.commit()
        return False


def join(*args: str) -> str:
    """Join key components, like os.path.join (for use with walk())."""
    return ".".join(a for a in args if a)


def _inner_walk(kvsdir: KVSDir, curr_dir: str, topdown: bool, namespace: str | None):
    if topdown:
        yield (curr_dir, kvsdir.directories(), kvsdir.files())
    for directory in kvsdir.directories():
        path = join(curr_dir, directory)
        sub = get_dir(kvsdir.fhdl, kvsdir.key_at(directory), namespace=namespace)
        yield from _inner_walk(sub, path, topdown, namespace)
    if not topdown:
        yield (curr_dir, kvsdir.directories(), kvsdir.files())


def walk(directory, topdown: bool = False, flux_handle=None, namespace: str | None = None):
    """Walk a KVS directory like os.walk(): yields (path, directories, files)."""
    if not isinstance(directory, KVSDir):
        if flux_handle is None:
            raise ValueError("If directory is a key, flux_handle must be specified")
        directory = KVSDir(flux_handle, directory, namespace=namespace)
    return _inner_walk(directory, "", topdown, namespace)
