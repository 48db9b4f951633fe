"""SQLite persistence of the KVS and the content store.

One file, `content.sqlite`, in the instance's statedir (or rundir). The KVS is kept
as rows (namespace, full key, chunk number) rather than as hashed tree objects, so a
commit writes only the rows it changes; an append adds one chunk row, never rewriting
the value. WAL mode with synchronous=NORMAL: a transaction is in the WAL once COMMIT
returns, which survives the broker being killed (not a power loss; the SYNC commit
flag asks for an fsync).
"""

from __future__ import annotations

import errno
import fcntl
import gc
import logging
import os
import sqlite3

import orjson
from flux.core.errors import FluxError
from flux.core.kvs.tree import (
    COLLAPSE_CHUNKS,
    DEL,
    DELSUB,
    INS,
    ROW_DIR,
    ROW_LINK,
    ROW_VAL,
    Dir,
    Link,
    Namespace,
    Val,
)

# effect kinds beyond the tree's DEL/DELSUB/INS
NS_PUT, NS_DEL, ROOTSEQ, CONTENT = 3, 4, 5, 6

log = logging.getLogger("flux.kvs")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY, owner INTEGER NOT NULL, flags INTEGER NOT NULL,
    rootseq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, type INTEGER NOT NULL,
    data BLOB, PRIMARY KEY (ns, key, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS content (ref TEXT PRIMARY KEY, data BLOB NOT NULL);
"""
SCHEMA_VERSION = "1"

_SQL = {
    DEL: "DELETE FROM kv WHERE ns=? AND key=?",
    DELSUB: "DELETE FROM kv WHERE ns=? AND key>? AND key<?",
    INS: "INSERT OR REPLACE INTO kv (ns, key, seq, type, data) VALUES (?,?,?,?,?)",
    NS_PUT: "INSERT OR REPLACE INTO namespaces (name, owner, flags, rootseq) VALUES (?,?,?,?)",
    ROOTSEQ: "UPDATE namespaces SET rootseq=? WHERE name=?",
    CONTENT: "INSERT OR IGNORE INTO content (ref, data) VALUES (?,?)",
}


class Store:
    def __init__(self, path: str):
        self.path = path
        # one broker per file: a second one would diverge from the first's memory
        self._lockfd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lockfd)
            raise FluxError(errno.EBUSY, f"{path} is in use by another broker "
                                         "(is another instance using this statedir?)") from None
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._rconn: sqlite3.Connection | None = None
        c = self.conn
        mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            log.warning("kvs: %s: WAL mode unavailable (journal_mode=%s)", path, mode)
        c.execute("PRAGMA synchronous=NORMAL")
        c.executescript(SCHEMA)
        row = c.execute("SELECT value FROM meta WHERE name='version'").fetchone()
        if row is None:
            c.execute("INSERT INTO meta (name, value) VALUES ('version', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise RuntimeError(f"{path}: KVS schema version {row[0]}, this broker reads "
                               f"version {SCHEMA_VERSION}")

    # -- reading ----------------------------------------------------------
    def load(self) -> dict[str, Namespace]:
        """Every namespace with its tree, rebuilt from the rows."""
        # the cyclic GC would rescan the growing tree over and over (3x slower); the
        # nodes hold no cycles, so pause it while building
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._load()
        finally:
            if was_enabled:
                gc.enable()

    def _load(self) -> dict[str, Namespace]:
        out: dict[str, Namespace] = {}
        for name, owner, flags, rootseq in self.conn.execute(
                "SELECT name, owner, flags, rootseq FROM namespaces"):
            out[name] = Namespace(name, owner, flags, rootseq)
        cur_ns = None
        dirs: dict[str, Dir] = {}
        last_key, last_val = None, None
        # rows come sorted, so a parent (a prefix) always precedes its children
        for ns, key, seq, typ, data in self.conn.execute(
                "SELECT ns, key, seq, type, data FROM kv ORDER BY ns, key, seq"):
            if ns != cur_ns:
                cur_ns = ns
                nso = out.get(ns)
                if nso is None:
                    log.warning("kvs: rows of unknown namespace %s ignored", ns)
                    dirs = {}
                    continue
                dirs = {"": nso.root}
                last_key = last_val = None
            if not dirs:
                continue
            if seq > 0:
                if key == last_key and last_val is not None:
                    last_val.chunks.append(bytes(data or b""))
                    last_val.size += len(data or b"")
                    last_val.nseq = seq + 1
                    if len(last_val.chunks) > COLLAPSE_CHUNKS:
                        last_val.data()
                continue
            parent_key, _, name = key.rpartition(".")
            parent = dirs.get(parent_key)
            if parent is None:
                log.warning("kvs: %s: row %s has no parent directory; ignored", ns, key)
                continue
            if typ == ROW_VAL:
                node = last_val = Val([bytes(data or b"")])
                last_key = key
            elif typ == ROW_DIR:
                node = dirs[key] = Dir()
                last_val = None
            elif typ == ROW_LINK:
                d = orjson.loads(data)
                node = Link(d["target"], d.get("namespace"))
                last_val = None
            else:
                log.warning("kvs: %s: row %s has unknown type %s; ignored", ns, key, typ)
                continue
            parent.entries[name] = node
        return out

    def read_value(self, ns: str, key: str) -> bytes:
        """A value's bytes as committed (for values evicted from memory).

        Read through a second connection: the writer thread owns the first one, and
        in WAL mode a reader sees every committed transaction without waiting for it.
        """
        if self._rconn is None:
            self._rconn = sqlite3.connect(self.path, isolation_level=None,
                                          check_same_thread=False)
        rows = self._rconn.execute("SELECT data FROM kv WHERE ns=? AND key=? ORDER BY seq",
                                   (ns, key)).fetchall()
        if not rows:
            raise FluxError(errno.EIO, f"{ns}: {key}: value missing from the content store")
        return b"".join(bytes(r[0] or b"") for r in rows)

    def content_load(self, ref: str) -> bytes | None:
        row = self.conn.execute("SELECT data FROM content WHERE ref=?", (ref,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- writing ----------------------------------------------------------
    def write(self, effects: list[tuple], sync: bool = False) -> None:
        """Apply effects in one SQLite transaction (consecutive alike ones batched)."""
        c = self.conn
        if sync:
            c.execute("PRAGMA synchronous=FULL")
        try:
            c.execute("BEGIN")
            try:
                group_kind, group = None, []
                for e in effects:
                    kind = e[0]
                    if kind == NS_DEL:
                        self._run(group_kind, group)
                        group_kind, group = None, []
                        c.execute("DELETE FROM namespaces WHERE name=?", (e[1],))
                        c.execute("DELETE FROM kv WHERE ns=?", (e[1],))
                        continue
                    if kind != group_kind:
                        self._run(group_kind, group)
                        group_kind, group = kind, []
                    if kind == DELSUB:
                        group.append((e[1], e[2] + ".", e[2] + "/"))
                    else:
                        group.append(e[1:])
                self._run(group_kind, group)
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        finally:
            if sync:
                c.execute("PRAGMA synchronous=NORMAL")

    def _run(self, kind, group) -> None:
        if not group:
            return
        if len(group) == 1:
            self.conn.execute(_SQL[kind], group[0])
        else:
            self.conn.executemany(_SQL[kind], group)

    def checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(FULL)")

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.conn.close()
        if self._rconn is not None:
            self._rconn.close()
        os.close(self._lockfd)


def db_path(statedir: str) -> str:
    os.makedirs(statedir, exist_ok=True)
    return os.path.join(statedir, "content.sqlite")
