"""The `kvs` and `kvs-watch` services (rank 0), and the in-process KVS API.

Commits are applied to the in-memory trees at once, and their row changes queued.
All commits queued during one event-loop turn are written in a single SQLite
transaction (group commit), then answered, then `kvs.namespace-<ns>-setroot` is
published and watchers are told. So a commit is answered only once it is on disk,
and readers on rank 0 see it as soon as it is answered.

Other broker services use the same engine without messages: `broker.kvs` is the
KVSService (see `commit_ops`, `lookup_value`, `watch_internal`, ...).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from flux.core.broker.service import NOREPLY, Service, method, payload_of, require
from flux.core.errors import FluxError
from flux.core.kvs import treeobj as T
from flux.core.kvs.store import CONTENT, NS_DEL, NS_PUT, ROOTSEQ, Store, db_path
from flux.core.kvs.tree import (
    Dir,
    Hasher,
    Link,
    Namespace,
    NodeBuilder,
    Txn,
    Val,
    deep_copy,
    full_treeobj,
    resolve,
)
from flux.core.message import FLAG_PRIVATE, ROLE_OWNER, ROLE_USER, Message

DEFAULT_MAX_VALUE = 64 * 1024 * 1024
DEFAULT_MAX_BLOB = 1024 * 1024 * 1024
LOOKUP_FLAGS = T.READDIR | T.READLINK | T.TREEOBJ
WATCH_FLAGS = (T.WATCH | T.WAITCREATE | T.WATCH_FULL | T.WATCH_UNIQ | T.WATCH_APPEND
               | T.STREAM | T.WATCH_INITIAL_SENTINEL)


def _int(p: dict, key: str, default: int, topic: str) -> int:
    v = p.get(key, default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool):
        raise FluxError(errno.EPROTO, f"{topic}: field '{key}' must be an integer")
    return v


def _nsname(p: dict, topic: str) -> str:
    ns = p.get("namespace")
    if ns is None or ns == "":
        return T.PRIMARY
    if not isinstance(ns, str):
        raise FluxError(errno.EPROTO, f"{topic}: field 'namespace' must be a string")
    return ns


class Pending:
    """A change applied in memory, waiting for the next flush to reach the disk."""

    __slots__ = ("ns", "effects", "rollback", "done", "keys", "struct", "sync", "evictable")

    def __init__(self, ns: str | None, effects: list, rollback: Callable[[], None] | None,
                 done: Callable[[FluxError | None], None] | None, keys=(), struct=(),
                 sync: bool = False, evictable=()):
        self.ns = ns
        self.effects = effects
        self.rollback = rollback
        self.done = done
        self.keys = keys
        self.struct = struct
        self.sync = sync
        self.evictable = evictable


class Watcher:
    """One watch: answers a kvs-watch.lookup stream, or calls an in-process callback."""

    __slots__ = ("ns", "key", "nkey", "flags", "msg", "callback", "userid", "rolemask", "sent",
                 "last", "val", "offset", "active")

    def __init__(self, ns: str, key: str, flags: int, msg: Message | None,
                 callback: Callable | None, userid: int | None, rolemask: int):
        self.ns, self.key, self.flags = ns, key, flags
        self.nkey = T.normalize_key(key)[0]
        self.msg, self.callback = msg, callback
        self.userid, self.rolemask = userid, rolemask
        self.sent = False
        self.last = None
        self.val = None
        self.offset = 0
        self.active = True


class WatchHandle:
    """What `watch_internal` returns: `cancel()` stops the callbacks."""

    def __init__(self, kvs: KVSService, w: Watcher):
        self._kvs, self._w = kvs, w

    @property
    def active(self) -> bool:
        return self._w.active

    def cancel(self) -> None:
        self._kvs._drop_watcher(self._w)


class KVSService(Service):
    name = "kvs"

    def __init__(self, broker):
        super().__init__(broker)
        a = broker.attrs
        self.hasher = Hasher(a.setdefault("content.hash", "sha1"))
        self.max_value = a.get_int("kvs.max-value-size", DEFAULT_MAX_VALUE)
        a.setdefault("kvs.max-value-size", str(self.max_value))
        self.max_blob = a.get_int("content.blob-size-limit", DEFAULT_MAX_BLOB)
        statedir = a.get("statedir") or a.get("rundir") or "."
        path = db_path(statedir)
        a.set("content.backing-path", path)
        a.setdefault("content.backing-module", "content-sqlite")
        self.store = Store(path)
        self.namespaces: dict[str, Namespace] = self.store.load()
        if T.PRIMARY not in self.namespaces:
            self.namespaces[T.PRIMARY] = Namespace(T.PRIMARY, broker.owner)
            self.store.write([(NS_PUT, T.PRIMARY, broker.owner, 0, 0)])
        self.builder = NodeBuilder(self.content_load, self.max_value)
        self.pending: list[Pending] = []
        self.pending_blobs: dict[str, bytes] = {}
        self._evict_src: dict[str, tuple] = {}  # namespace -> (loader, namespace), see Val
        self.writing_blobs: dict[str, bytes] = {}  # blobs of the batch being written
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="kvs-store")
        self.writing: asyncio.Future | None = None
        self.flush_scheduled = False
        self.watchers: dict[str, dict[str, list[Watcher]]] = {}
        self.nwatchers_full: dict[str, int] = {}
        self.version_waiters: dict[str, list[tuple[int, Message]]] = {}
        self.sync_waiters: list[Message] = []
        self.fences: dict[str, dict] = {}
        self.stats = {"commits": 0, "flushes": 0, "ops": 0, "lookups": 0, "flush-errors": 0}
        self.closed = False
        broker.kvs = self

    async def start(self) -> None:
        self.broker.kvs = self

    async def stop(self) -> None:
        if self.writing is not None:
            await asyncio.wait([self.writing])
        self._flush_sync()
        self.writer.shutdown(wait=True)
        for ns_watchers in list(self.watchers.values()):
            for ws in list(ns_watchers.values()):
                for w in list(ws):
                    self._watch_end(w, errno.ENOSYS, "the KVS is shutting down")
        self.closed = True
        self.store.close()

    # ================================================================ access
    def _ns(self, name: str, userid: int | None, rolemask: int) -> Namespace:
        ns = self.namespaces.get(name)
        if ns is None:
            raise FluxError(errno.ENOTSUP, f"namespace '{name}' does not exist")
        if rolemask & ROLE_OWNER:
            return ns
        if name == T.PRIMARY:
            raise FluxError(errno.EPERM, "the primary namespace is restricted to the instance owner")
        if ns.owner != userid:
            raise FluxError(errno.EPERM, f"namespace '{name}' belongs to user {ns.owner}; "
                                         f"user {userid} may not access it")
        return ns

    @staticmethod
    def _cred(userid: int | None) -> tuple[int | None, int]:
        return (None, ROLE_OWNER) if userid is None else (userid, ROLE_USER)

    # ================================================================ reading
    def _resolve(self, nsname: str, key: str, flags: int, userid: int | None, rolemask: int,
                 snapshot: Namespace | None = None):
        norm, want_dir = T.normalize_key(key)

        def get_ns(name: str) -> Namespace:
            if snapshot is not None and name == nsname:
                return snapshot
            return self._ns(name, userid, rolemask)

        node, ns = resolve(get_ns, nsname, norm, not (flags & (T.READLINK | T.TREEOBJ)))
        return node, ns, norm, want_dir

    def _treeobj(self, node, key: str, flags: int, want_dir: bool) -> dict:
        t = type(node)
        if flags & T.TREEOBJ:
            return full_treeobj(node)
        if flags & T.READLINK:
            if t is not Link:
                raise FluxError(errno.EINVAL, f"{key}: not a symlink")
            return T.symlink(node.target, node.namespace)
        if t is Dir:
            if flags & T.READDIR:
                return self.hasher.listing(node)
            raise FluxError(errno.EISDIR, f"{key}: {os.strerror(errno.EISDIR)}")
        if flags & T.READDIR or want_dir:
            raise FluxError(errno.ENOTDIR, f"{key}: {os.strerror(errno.ENOTDIR)}")
        return T.val(node.data())

    def lookup_node(self, namespace: str, key: str, userid: int | None = None,
                    follow: bool = True):
        """The tree node at key (Val, Dir or Link); raises FluxError (ENOENT, ...)."""
        uid, role = self._cred(userid)
        node, _ns, _n, _w = self._resolve(namespace, key, 0 if follow else T.READLINK, uid, role)
        return node

    def lookup_value(self, namespace: str, key: str, userid: int | None = None) -> bytes:
        """The raw bytes stored at key (EISDIR for a directory, ENOENT if missing)."""
        node = self.lookup_node(namespace, key, userid)
        if type(node) is not Val:
            raise FluxError(errno.EISDIR, f"{key}: {os.strerror(errno.EISDIR)}")
        return node.data()

    def lookup_json(self, namespace: str, key: str, userid: int | None = None) -> Any:
        data = self.lookup_value(namespace, key, userid)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise FluxError(errno.EINVAL, f"{key}: value is not JSON") from None

    def exists(self, namespace: str, key: str) -> bool:
        try:
            self.lookup_node(namespace, key)
            return True
        except FluxError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise

    def listdir(self, namespace: str, key: str = ".", userid: int | None = None) -> list[str]:
        node = self.lookup_node(namespace, key, userid)
        if type(node) is not Dir:
            raise FluxError(errno.ENOTDIR, f"{key}: {os.strerror(errno.ENOTDIR)}")
        return sorted(node.entries)

    # ================================================================ writing
    def _queue(self, p: Pending) -> None:
        self.pending.append(p)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _apply(self, ns: Namespace, ops: Any, flags: int, done) -> Pending:
        """Apply a transaction atomically in memory and queue it for the disk."""
        if not isinstance(ops, list):
            raise FluxError(errno.EPROTO, "ops must be an array")
        if flags & ~(T.NO_MERGE | T.SYNC | 2):  # 2 = FLUX_KVS_TXN_COMPACT, accepted
            raise FluxError(errno.EINVAL, f"unknown commit flags {flags:#x}")
        txn = Txn(ns, self.builder)
        try:
            for op in ops:
                txn.apply(op)
        except BaseException:
            txn.rollback()
            raise
        ns.rootseq += 1

        def rollback() -> None:
            txn.rollback()
            ns.rootseq -= 1

        self.stats["commits"] += 1
        self.stats["ops"] += len(ops)
        p = Pending(ns.name, txn.effects, rollback, done, txn.keys, txn.struct,
                    bool(flags & T.SYNC), txn.evictable)
        self._queue(p)
        return p

    def commit_nowait(self, namespace: str, ops: list[dict], userid: int | None = None,
                      flags: int = 0) -> asyncio.Future:
        """Apply ops now; the future resolves to {namespace, rootseq} once on disk.

        Raises FluxError at once if the transaction is refused (nothing is applied).
        """
        uid, role = self._cred(userid)
        ns = self._ns(namespace, uid, role)
        fut = asyncio.get_running_loop().create_future()
        seq_box: list[int] = []

        def done(exc: FluxError | None) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result({"namespace": namespace, "rootseq": seq_box[0]})

        self._apply(ns, ops, flags, done)
        seq_box.append(ns.rootseq)
        return fut

    async def commit_ops(self, namespace: str, ops: list[dict], userid: int | None = None,
                         flags: int = 0) -> dict:
        """Commit ops ({key, flags, dirent} or {key, flags, raw}) atomically; see ops.py."""
        return await self.commit_nowait(namespace, ops, userid, flags)

    async def copy(self, src_ns: str, src_key: str, dst_ns: str, dst_key: str,
                   move: bool = False) -> None:
        """Copy (or move) a key or a whole directory, e.g. a job's guest namespace.

        The nodes are copied in memory: no tree-object encoding of the values."""
        node = self.lookup_node(src_ns, src_key, follow=False)
        await self._commit_node(dst_ns, dst_key, deep_copy(node))
        if move:
            await self.commit_ops(src_ns, [{"key": src_key, "flags": 0, "dirent": None}])

    def _commit_node(self, namespace: str, key: str, node) -> asyncio.Future:
        ns = self._ns(namespace, None, ROLE_OWNER)
        fut = asyncio.get_running_loop().create_future()
        txn = Txn(ns, self.builder)
        try:
            txn.put_node(T.normalize_key(key)[0], node)
        except BaseException:
            txn.rollback()
            raise
        ns.rootseq += 1

        def rollback() -> None:
            txn.rollback()
            ns.rootseq -= 1

        def done(exc):
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result({"namespace": namespace, "rootseq": ns.rootseq})

        self._queue(Pending(ns.name, txn.effects, rollback, done, txn.keys, txn.struct,
                            evictable=txn.evictable))
        return fut

    # ---------------------------------------------------------------- namespaces
    def _ns_create(self, name: str, owner: int, flags: int, root: Dir | None, done) -> None:
        T.validate_namespace(name)
        if name in self.namespaces:
            raise FluxError(errno.EEXIST, f"namespace '{name}' already exists")
        ns = Namespace(name, owner, flags, 0, root)
        self.namespaces[name] = ns
        effects: list[tuple] = [(NS_PUT, name, owner, flags, 0)]
        if root is not None and root.entries:
            txn = Txn(ns, self.builder)
            for k, v in root.entries.items():
                txn._rows(k, v)
            effects += txn.effects

        def rollback() -> None:
            if self.namespaces.get(name) is ns:
                del self.namespaces[name]

        self._queue(Pending(None, effects, rollback, done))

    def _ns_remove(self, name: str, done) -> None:
        if name == T.PRIMARY:
            raise FluxError(errno.EINVAL, "the primary namespace cannot be removed")
        ns = self.namespaces.pop(name, None)
        if ns is None:
            raise FluxError(errno.ENOTSUP, f"namespace '{name}' does not exist")

        def rollback() -> None:
            self.namespaces.setdefault(name, ns)

        def finish(exc: FluxError | None) -> None:
            if exc is None:
                self._namespace_gone(name)
            done(exc)

        self._queue(Pending(None, [(NS_DEL, name)], rollback, finish))

    def _namespace_gone(self, name: str) -> None:
        text = f"namespace '{name}' was removed"
        for ws in list(self.watchers.get(name, {}).values()):
            for w in list(ws):
                self._watch_end(w, errno.ENOTSUP, text)
        for _seq, m in self.version_waiters.pop(name, []):
            self.respond_error(m, errno.ENOTSUP, text)
        for fname, f in list(self.fences.items()):
            if f["ns"] == name:
                del self.fences[fname]
                for m in f["msgs"]:
                    self.respond_error(m, errno.ENOTSUP, text)
        self.broker.publish(f"kvs.namespace-{name}-removed", {"namespace": name},
                            flags=FLAG_PRIVATE)

    async def namespace_create(self, name: str, owner: int | None = None, flags: int = 0) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._ns_create(name, self.broker.owner if owner is None else owner, flags, None,
                        lambda e: fut.done() or (fut.set_exception(e) if e else fut.set_result(None)))
        await fut

    async def namespace_remove(self, name: str) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._ns_remove(name, lambda e: fut.done() or (fut.set_exception(e) if e else fut.set_result(None)))
        await fut

    # non-blocking forms for in-broker callers on the throughput path (job-exec): the
    # change is applied in memory at once (FluxError raised here if refused), and the
    # future is done once it is on disk, so a caller can chain work without waiting
    def namespace_create_nowait(self, name: str, owner: int | None = None,
                                flags: int = 0) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._ns_create(name, self.broker.owner if owner is None else owner, flags, None,
                        lambda e: fut.done() or (fut.set_exception(e) if e else fut.set_result(None)))
        return fut

    def namespace_remove_nowait(self, name: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._ns_remove(name, lambda e: fut.done() or (fut.set_exception(e) if e else fut.set_result(None)))
        return fut

    def copy_nowait(self, src_ns: str, src_key: str, dst_ns: str, dst_key: str) -> asyncio.Future:
        node = self.lookup_node(src_ns, src_key, follow=False)
        return self._commit_node(dst_ns, dst_key, deep_copy(node))

    def namespace_owner(self, name: str) -> int:
        ns = self.namespaces.get(name)
        if ns is None:
            raise FluxError(errno.ENOTSUP, f"namespace '{name}' does not exist")
        return ns.owner

    # ---------------------------------------------------------------- content
    def content_load(self, ref: str) -> bytes:
        data = self.pending_blobs.get(ref) or self.writing_blobs.get(ref)
        if data is None:
            data = self.store.content_load(ref)
        if data is None:
            raise FluxError(errno.ENOENT, f"blob {ref} is not in the content store")
        return data

    def content_store(self, data: bytes, done: Callable[[FluxError | None], None]) -> str:
        if len(data) > self.max_blob:
            raise FluxError(errno.EFBIG, f"blob of {len(data)} bytes is larger than the limit "
                                         f"of {self.max_blob} bytes (content.blob-size-limit)")
        ref = self.hasher.ref(data)
        self.pending_blobs[ref] = data

        def rollback() -> None:
            self.pending_blobs.pop(ref, None)

        self._queue(Pending(None, [(CONTENT, ref, data)], rollback, done))
        return ref

    # ================================================================ flush
    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.writing is not None or not self.pending or self.closed:
            return  # a write in flight flushes what queued meanwhile when it ends
        batch, self.pending = self.pending, []
        effects, sync, touched = self._effects(batch)
        # SQLite runs in a writer thread (it releases the GIL), so the event loop goes on
        # routing and applying the next commits in memory while this batch is written
        self.writing_blobs, self.pending_blobs = self.pending_blobs, {}
        fut = asyncio.get_running_loop().run_in_executor(self.writer, self.store.write,
                                                         effects, sync)
        self.writing = fut
        fut.add_done_callback(lambda f: self._written(f, batch, touched))

    def _effects(self, batch: list[Pending]) -> tuple[list, bool, dict]:
        effects: list[tuple] = []
        sync = False
        touched: dict[str, tuple[set, set]] = {}
        for p in batch:
            effects.extend(p.effects)
            sync = sync or p.sync
            if p.ns is not None:
                t = touched.get(p.ns)
                if t is None:
                    t = touched[p.ns] = (set(), set())
                t[0].update(p.keys)
                t[1].update(p.struct)
        for name, t in touched.items():
            ns = self.namespaces.get(name)
            if ns is not None:
                effects.append((ROOTSEQ, ns.rootseq, name))
                # the version this batch brings to disk (later commits may be in memory)
                touched[name] = (*t, ns.rootseq)
        return effects, sync, touched

    def _written(self, fut: asyncio.Future, batch: list[Pending], touched: dict) -> None:
        self.writing = None
        self.writing_blobs = {}
        exc = None if fut.cancelled() else fut.exception()
        if exc is None and fut.cancelled():
            exc = RuntimeError("write cancelled")
        if exc is not None:
            # commits queued since were applied in memory on top of this batch: undo
            # them first (newest first), then the batch, and fail them all
            later, self.pending = self.pending, []
            self.pending_blobs.clear()
            self._fail_batch(later + batch, exc)
            return
        self._finish(batch, touched)
        if self.pending:
            self._flush()
        else:
            self._answer_sync_waiters()

    def _fail_batch(self, batch: list[Pending], exc: BaseException) -> None:
        self.stats["flush-errors"] += 1
        self.broker.log_exception("kvs: writing to the content store failed", exc)
        for p in reversed(batch):
            if p.rollback is not None:
                p.rollback()
        e = FluxError(errno.EIO, f"KVS store write failed: {exc}")
        for p in batch:
            if p.done is not None:
                p.done(e)

    def _flush_sync(self) -> None:
        """Write whatever is pending from this thread (at shutdown)."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        effects, sync, touched = self._effects(batch)
        try:
            self.store.write(effects, sync)
        except Exception as exc:  # noqa: BLE001
            self._fail_batch(batch, exc)
            return
        self.pending_blobs.clear()
        self._finish(batch, touched)
        self._answer_sync_waiters()

    def _finish(self, batch: list[Pending], touched: dict) -> None:
        self.stats["flushes"] += 1
        for p in batch:
            # large values now on disk leave memory, unless changed since (appended)
            if not p.evictable:
                continue
            src = self._evict_src.get(p.ns)
            if src is None:
                src = self._evict_src[p.ns] = (self.store.read_value, p.ns)
            for node, path, nseq in p.evictable:
                if node.nseq == nseq and node.chunks is not None:
                    node.evict(src, path)
        for p in batch:
            if p.done is not None:
                try:
                    p.done(None)
                except Exception as exc:  # noqa: BLE001
                    self.broker.log_exception("kvs: commit completion failed", exc)
        for name, t in touched.items():
            ns = self.namespaces.get(name)
            if ns is None or len(t) < 3:
                continue
            keys, struct, rootseq = t
            self.broker.publish(f"kvs.namespace-{name}-setroot",
                                {"namespace": name, "rootseq": rootseq, "keys": sorted(keys),
                                 "owner": ns.owner}, flags=FLAG_PRIVATE, userid=ns.owner)
            self._notify(name, keys, struct)
            waiters = self.version_waiters.get(name)
            if waiters:
                keep = []
                for seq, m in waiters:
                    if rootseq >= seq:
                        self.respond(m, {"rootseq": rootseq, "namespace": name})
                    else:
                        keep.append((seq, m))
                self.version_waiters[name] = keep

    def _answer_sync_waiters(self) -> None:
        waiters, self.sync_waiters = self.sync_waiters, []
        for m in waiters:
            self._answer_sync(m)

    # ================================================================ watching
    def add_watcher(self, w: Watcher) -> None:
        """Register a watcher and send its first answer (if the key exists)."""
        self._ns(w.ns, w.userid, w.rolemask)  # ENOTSUP / EPERM up front
        if not self._evaluate(w):
            return
        self.watchers.setdefault(w.ns, {}).setdefault(w.nkey, []).append(w)
        if w.flags & T.WATCH_FULL:
            self.nwatchers_full[w.ns] = self.nwatchers_full.get(w.ns, 0) + 1

    def _drop_watcher(self, w: Watcher) -> None:
        if not w.active:
            return
        w.active = False
        wmap = self.watchers.get(w.ns)
        if wmap is None:
            return
        k = w.nkey
        ws = wmap.get(k)
        if ws and w in ws:
            ws.remove(w)
            if w.flags & T.WATCH_FULL:
                self.nwatchers_full[w.ns] -= 1
            if not ws:
                del wmap[k]
                if not wmap:
                    del self.watchers[w.ns]

    def _watch_send(self, w: Watcher, obj: dict, data: bytes | None) -> None:
        if w.msg is not None:
            ns = self.namespaces.get(w.ns)
            self.respond(w.msg, {"namespace": w.ns, "key": w.key, "val": obj,
                                 "rootseq": ns.rootseq if ns else 0})
        else:
            w.callback(data, 0)

    def _watch_end(self, w: Watcher, errnum: int, text: str | None = None) -> None:
        was_active = w.active
        self._drop_watcher(w)
        if not was_active:
            return
        if w.msg is not None:
            self.respond_error(w.msg, errnum, text)
        else:
            try:
                w.callback(None, errnum)
            except Exception as exc:  # noqa: BLE001
                self.broker.log_exception("kvs: watch callback failed", exc)

    def _evaluate(self, w: Watcher) -> bool:
        """Answer a watcher with the key's current state; False once it is finished."""
        try:
            node, _ns, norm, want_dir = self._resolve(w.ns, w.key, w.flags & LOOKUP_FLAGS,
                                                      w.userid, w.rolemask)
            if w.flags & T.WATCH_APPEND:
                if type(node) is not Val:
                    raise FluxError(errno.EINVAL, f"{w.key}: an append watch needs a value, "
                                                  "not a directory or symlink")
                if not w.sent:
                    data = node.data()
                elif node is not w.val or node.size < w.offset:
                    raise FluxError(errno.EINVAL, f"{w.key}: value was overwritten, not appended")
                elif node.size == w.offset:
                    return True
                else:
                    data = node.tail(w.offset)
                w.val, w.offset = node, node.size
                obj = T.val(data) if w.msg is not None else None
                self._watch_send(w, obj, data)
            elif w.msg is None:
                if type(node) is not Val:
                    raise FluxError(errno.EISDIR, f"{w.key}: {os.strerror(errno.EISDIR)}")
                data = node.data()
                if w.sent and w.flags & T.WATCH_UNIQ and data == w.last:
                    return True
                w.last = data if w.flags & T.WATCH_UNIQ else None
                self._watch_send(w, None, data)
            else:
                obj = self._treeobj(node, w.key, w.flags, want_dir)
                if w.sent and w.flags & (T.WATCH_UNIQ | T.WATCH_FULL) and obj == w.last:
                    return True
                w.last = obj if w.flags & (T.WATCH_UNIQ | T.WATCH_FULL) else None
                self._watch_send(w, obj, None)
        except FluxError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR) and w.flags & T.WAITCREATE and not w.sent:
                return True
            self._watch_end(w, exc.errno, exc.strerror)
            return False
        except Exception as exc:  # noqa: BLE001 - an internal callback raised
            self.broker.log_exception(f"kvs: watch of {w.ns}:{w.key} failed", exc)
            self._drop_watcher(w)
            return False
        w.sent = True
        if not w.flags & T.WATCH:
            if w.msg is not None and w.msg.streaming:
                self.respond_error(w.msg, errno.ENODATA)
            self._drop_watcher(w)
            return False
        return True

    def _notify(self, nsname: str, keys: set, struct: set) -> None:
        wmap = self.watchers.get(nsname)
        if not wmap:
            return
        fire: list[Watcher] = []
        for k in keys:
            ws = wmap.get(k)
            if ws:
                fire.extend(ws)
        if struct or self.nwatchers_full.get(nsname):
            prefixes = tuple(s + "." for s in struct)
            kprefixes = tuple(k + "." for k in keys)
            for wkey, ws in wmap.items():
                if prefixes and wkey.startswith(prefixes):
                    fire.extend(ws)
                    continue
                for w in ws:
                    if w.flags & T.WATCH_FULL and (wkey.startswith(kprefixes)
                                                   or any(k.startswith(wkey + ".") for k in keys)
                                                   or not wkey):
                        fire.append(w)
        seen = set()
        for w in fire:
            if id(w) in seen or not w.active:
                continue
            seen.add(id(w))
            self._evaluate(w)

    def watch_internal(self, namespace: str, key: str, callback: Callable[[bytes | None, int], None],
                       append: bool = True, waitcreate: bool = True, uniq: bool = False,
                       userid: int | None = None) -> WatchHandle:
        """Call callback(data, 0) with the value now and on each change; callback(None, errno)
        when the watch ends (key removed or overwritten under an append watch, namespace
        removed). With append=True, later calls carry only the newly appended bytes."""
        flags = T.WATCH | (T.WATCH_APPEND if append else 0) | (T.WAITCREATE if waitcreate else 0)
        flags |= T.WATCH_UNIQ if uniq else 0
        uid, role = self._cred(userid)
        w = Watcher(namespace, key, flags, None, callback, uid, role)
        self.add_watcher(w)
        return WatchHandle(self, w)

    # ================================================================ RPCs
    @method("commit")
    def commit(self, msg):
        p = payload_of(msg)
        nsname = _nsname(p, msg.topic)
        flags = _int(p, "flags", 0, msg.topic)
        ops = require(p, "ops", list, msg.topic)
        ns = self._ns(nsname, msg.userid, msg.rolemask)

        def done(exc):
            if exc is not None:
                self.respond_error(msg, exc.errno, exc.strerror)
            else:
                self.respond(msg, {"namespace": nsname, "rootseq": seq})

        self._apply(ns, ops, flags, done)
        seq = ns.rootseq  # read by done() at flush time
        return NOREPLY

    @method("fence")
    def fence(self, msg):
        p = payload_of(msg)
        name = require(p, "name", str, msg.topic)
        nprocs = require(p, "nprocs", int, msg.topic)
        nsname = _nsname(p, msg.topic)
        flags = _int(p, "flags", 0, msg.topic)
        ops = require(p, "ops", list, msg.topic)
        if not name:
            raise FluxError(errno.EINVAL, "kvs.fence: name must not be empty")
        if nprocs < 1:
            raise FluxError(errno.EINVAL, f"kvs.fence: nprocs must be at least 1, not {nprocs}")
        self._ns(nsname, msg.userid, msg.rolemask)
        f = self.fences.get(name)
        if f is None:
            f = self.fences[name] = {"nprocs": nprocs, "ns": nsname, "flags": 0, "msgs": [],
                                     "ops": []}
        elif f["nprocs"] != nprocs or f["ns"] != nsname:
            raise FluxError(errno.EINVAL, f"kvs.fence {name}: nprocs/namespace ({nprocs}, {nsname}) "
                                          f"differ from the fence's ({f['nprocs']}, {f['ns']})")
        f["msgs"].append(msg)
        f["ops"].extend(ops)
        f["flags"] |= flags
        if len(f["msgs"]) < nprocs:
            return NOREPLY
        del self.fences[name]
        msgs = f["msgs"]

        def done(exc):
            for m in msgs:
                if exc is not None:
                    self.respond_error(m, exc.errno, exc.strerror)
                else:
                    self.respond(m, {"namespace": nsname, "rootseq": seq, "name": name})

        try:
            ns = self._ns(nsname, msg.userid, msg.rolemask)
            self._apply(ns, f["ops"], f["flags"], done)
        except FluxError as exc:
            done(exc)
            return NOREPLY
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            done(FluxError(errno.EPROTO, f"kvs.fence {name}: malformed ops: {exc!r}"))
            return NOREPLY
        seq = ns.rootseq
        return NOREPLY

    @method("lookup")
    def lookup(self, msg):
        p = payload_of(msg)
        key = require(p, "key", str, msg.topic)
        flags = _int(p, "flags", 0, msg.topic)
        nsname = _nsname(p, msg.topic)
        if flags & WATCH_FLAGS:
            raise FluxError(errno.EINVAL, "kvs.lookup: WATCH/WAITCREATE lookups go to kvs-watch.lookup")
        snapshot = None
        rootdir = p.get("rootdir")
        if rootdir is not None:
            snapshot = self._snapshot(nsname, rootdir, msg)
        self.stats["lookups"] += 1
        node, _ns, norm, want_dir = self._resolve(nsname, key, flags, msg.userid, msg.rolemask,
                                                  snapshot)
        return {"namespace": nsname, "key": key, "val": self._treeobj(node, key, flags, want_dir)}

    def _snapshot(self, nsname: str, rootdir: Any, msg) -> Namespace | None:
        ns = self._ns(nsname, msg.userid, msg.rolemask)
        if T.check(rootdir, "rootdir") == "dirref":
            refs = T.refs_of(rootdir, "rootdir")
            if refs and refs[0] == self.hasher.dir_ref(ns.root):
                return None
        node = self.builder.build(rootdir, "", 0)
        if type(node) is not Dir:
            raise FluxError(errno.EINVAL, "rootdir must be a directory tree object")
        return Namespace(nsname, ns.owner, ns.flags, ns.rootseq, node)

    @method("getroot")
    def getroot(self, msg):
        p = payload_of(msg)
        nsname = _nsname(p, msg.topic)
        ns = self._ns(nsname, msg.userid, msg.rolemask)
        return {"namespace": nsname, "rootref": self.hasher.dir_ref(ns.root),
                "rootseq": ns.rootseq, "owner": ns.owner, "flags": ns.flags}

    @method("wait-version")
    def wait_version(self, msg):
        p = payload_of(msg)
        seq = require(p, "rootseq", int, msg.topic)
        nsname = _nsname(p, msg.topic)
        ns = self._ns(nsname, msg.userid, msg.rolemask)
        if ns.rootseq >= seq and not any(q.ns == nsname for q in self.pending):
            return {"rootseq": ns.rootseq, "namespace": nsname}
        # answered by the flush that makes the version durable
        self.version_waiters.setdefault(nsname, []).append((seq, msg))
        return NOREPLY

    @method("sync")
    def sync(self, msg):
        p = payload_of(msg)
        nsname = _nsname(p, msg.topic)
        self._ns(nsname, msg.userid, msg.rolemask)
        if self.pending or self.writing is not None:
            for q in self.pending:
                q.sync = True
            self.sync_waiters.append(msg)
            return NOREPLY
        self._answer_sync(msg)
        return NOREPLY

    def _answer_sync(self, msg) -> None:
        nsname = _nsname(payload_of(msg), msg.topic)
        try:
            self.store.checkpoint()
        except Exception as exc:  # noqa: BLE001
            self.respond_error(msg, errno.EIO, f"kvs.sync: checkpoint failed: {exc}")
            return
        ns = self.namespaces.get(nsname)
        if ns is None:
            self.respond_error(msg, errno.ENOTSUP, f"namespace '{nsname}' does not exist")
            return
        self.respond(msg, {"namespace": nsname, "rootseq": ns.rootseq})

    @method("namespace-create", owner_only=True)
    def namespace_create_rpc(self, msg):
        p = payload_of(msg)
        name = require(p, "namespace", str, msg.topic)
        owner = p.get("owner")
        if owner is None or owner == -1:
            owner = self.broker.owner
        if not isinstance(owner, int) or isinstance(owner, bool) or owner < 0:
            raise FluxError(errno.EPROTO, f"{msg.topic}: field 'owner' must be a user id")
        flags = _int(p, "flags", 0, msg.topic)
        root = None
        rootref = p.get("rootref")
        if rootref is not None:
            if not isinstance(rootref, str):
                raise FluxError(errno.EPROTO, f"{msg.topic}: field 'rootref' must be a blobref")
            root = self.builder.build(T.dirref(rootref), "", 0)
        self._ns_create(name, owner, flags, root,
                        lambda e: self.respond_error(msg, e.errno, e.strerror) if e
                        else self.respond(msg, {"namespace": name}))
        return NOREPLY

    @method("namespace-remove", owner_only=True)
    def namespace_remove_rpc(self, msg):
        name = require(payload_of(msg), "namespace", str, msg.topic)
        self._ns_remove(name, lambda e: self.respond_error(msg, e.errno, e.strerror) if e
                        else self.respond(msg, {"namespace": name}))
        return NOREPLY

    @method("namespace-list")
    def namespace_list_rpc(self, msg):
        out = []
        for name in sorted(self.namespaces):
            ns = self.namespaces[name]
            if msg.rolemask & ROLE_OWNER or (ns.owner == msg.userid and name != T.PRIMARY):
                out.append({"namespace": name, "owner": ns.owner, "flags": ns.flags,
                            "rootseq": ns.rootseq})
        return {"namespaces": out}

    @method("dropcache")
    def dropcache(self, msg):
        return {}

    @method("stats-get")
    def stats_get(self, msg):
        nw = sum(len(ws) for m in self.watchers.values() for ws in m.values())
        return dict(self.stats, namespaces=len(self.namespaces), watchers=nw,
                    path=self.store.path, pending=len(self.pending))

    def disconnect(self, sender: str) -> None:
        for name, waiters in self.version_waiters.items():
            self.version_waiters[name] = [(s, m) for s, m in waiters if m.sender != sender]
        self.sync_waiters = [m for m in self.sync_waiters if m.sender != sender]


class KVSWatchService(Service):
    """`kvs-watch.lookup` streams a key's value now and after each change."""

    name = "kvs-watch"

    def __init__(self, broker, kvs: KVSService):
        super().__init__(broker)
        self.kvs = kvs

    @method("lookup")
    def lookup(self, msg):
        p = payload_of(msg)
        key = require(p, "key", str, msg.topic)
        flags = _int(p, "flags", 0, msg.topic)
        nsname = _nsname(p, msg.topic)
        if flags & T.WATCH and not msg.streaming:
            raise FluxError(errno.EPROTO, "kvs-watch.lookup with FLUX_KVS_WATCH requires the "
                                          "streaming flag")
        if flags & T.WATCH_APPEND and flags & (T.READDIR | T.READLINK | T.TREEOBJ):
            raise FluxError(errno.EINVAL, "kvs-watch.lookup: WATCH_APPEND cannot be combined "
                                          "with READDIR, READLINK or TREEOBJ")
        w = Watcher(nsname, key, flags, msg, None, msg.userid, msg.rolemask)
        self.kvs.add_watcher(w)
        return NOREPLY

    @method("cancel")
    def cancel(self, msg):
        p = payload_of(msg)
        tag = p.get("matchtag")
        for wmap in list(self.kvs.watchers.values()):
            for ws in list(wmap.values()):
                for w in list(ws):
                    m = w.msg
                    if m is not None and m.matchtag == tag and m.sender == msg.sender:
                        self.kvs._watch_end(w, errno.ENODATA)
        return NOREPLY

    def disconnect(self, sender: str) -> None:
        for wmap in list(self.kvs.watchers.values()):
            for ws in list(wmap.values()):
                for w in list(ws):
                    if w.msg is not None and w.msg.sender == sender:
                        self.kvs._drop_watcher(w)

