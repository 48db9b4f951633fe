"""The accounting database (SQLite): banks, associations (user, bank) and job records.

A *bank* has shares among its sibling banks and an optional parent bank. An
*association* is a user in a bank, with shares among the bank's users, job limits and
a decayed usage (core-seconds) stored as (value, time it was last decayed to). Every
write is one transaction: a refused change stores nothing.

All functions raise AccountingError (a ValueError) with a message for the user.
"""

from __future__ import annotations

import errno
import os
import pwd
import sqlite3
import time
from typing import Any

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bank_table (
    bank TEXT PRIMARY KEY,
    parent_bank TEXT,
    shares INTEGER NOT NULL,
    priority REAL NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    creation_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS association_table (
    username TEXT NOT NULL,
    userid INTEGER NOT NULL,
    bank TEXT NOT NULL,
    default_bank TEXT NOT NULL,
    shares INTEGER NOT NULL DEFAULT 1,
    max_running_jobs INTEGER NOT NULL DEFAULT 5,
    max_active_jobs INTEGER NOT NULL DEFAULT 7,
    queues TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 1,
    job_usage REAL NOT NULL DEFAULT 0,
    usage_time REAL NOT NULL DEFAULT 0,
    creation_time REAL NOT NULL,
    mod_time REAL NOT NULL,
    PRIMARY KEY (username, bank)
);
CREATE TABLE IF NOT EXISTS job_records (
    jobid INTEGER PRIMARY KEY,
    userid INTEGER NOT NULL,
    username TEXT NOT NULL,
    bank TEXT NOT NULL,
    t_submit REAL NOT NULL,
    t_run REAL NOT NULL,
    t_inactive REAL NOT NULL,
    ncores INTEGER NOT NULL,
    core_seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS job_records_assoc ON job_records (username, bank);
"""

ASSOC_FIELDS = ("username", "userid", "bank", "default_bank", "shares", "max_running_jobs",
                "max_active_jobs", "queues", "active", "job_usage", "usage_time",
                "creation_time", "mod_time")
BANK_FIELDS = ("bank", "parent_bank", "shares", "priority", "active", "creation_time")
EDITABLE = ("shares", "max_running_jobs", "max_active_jobs", "queues", "default_bank")


class AccountingError(ValueError):
    def __init__(self, msg: str, errnum: int = errno.EINVAL):
        super().__init__(msg)
        self.errno = errnum


def _nonneg_int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise AccountingError(f"{what} must be an integer >= 0, not {v!r}")
    return v


def _name(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v or any(c.isspace() for c in v) or len(v) > 255:
        raise AccountingError(f"{what} must be a non-empty name without spaces, not {v!r}")
    return v


class Store:
    """One open accounting database."""

    def __init__(self, path: str, create: bool = True):
        if not create and not os.path.exists(path):
            raise AccountingError(f"accounting database {path} does not exist"
                                  " (create it with `flux account create-db`)", errno.ENOENT)
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=10)
            self.conn.row_factory = sqlite3.Row
            self.conn.executescript(SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if row is None:
                self.conn.execute("INSERT INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise AccountingError(f"accounting database {path} has schema version {row[0]},"
                                      f" this plugin reads version {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise AccountingError(f"accounting database {path}: {exc}") from None
        self.path = path

    def close(self) -> None:
        self.conn.close()

    def _tx(self, fn, *args):
        """Run fn(*args) in one transaction: all or nothing."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(*args)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return out
        except sqlite3.Error as exc:
            raise AccountingError(f"accounting database {self.path}: {exc}") from None

    # ------------------------------------------------------------ banks
    def bank(self, name: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM bank_table WHERE bank=?", (name,)).fetchone()
        return dict(row) if row else None

    def add_bank(self, bank: str, shares: int, parent: str | None = None,
                 priority: float = 0.0) -> None:
        _name(bank, "bank")
        _nonneg_int(shares, "shares")
        if isinstance(priority, bool) or not isinstance(priority, int | float):
            raise AccountingError(f"priority must be a number, not {priority!r}")

        def do():
            old = self.bank(bank)
            if old is not None and old["active"]:
                raise AccountingError(f"bank {bank} already exists", errno.EEXIST)
            if parent is not None:
                p = self.bank(_name(parent, "parent bank"))
                if p is None or not p["active"]:
                    raise AccountingError(f"parent bank {parent} does not exist", errno.ENOENT)
            elif self.conn.execute("SELECT 1 FROM bank_table WHERE parent_bank IS NULL AND active=1"
                                   " AND bank != ?", (bank,)).fetchone():
                raise AccountingError(f"a root bank already exists; give bank {bank} a parent"
                                      " (--parent-bank)", errno.EEXIST)
            self.conn.execute("INSERT OR REPLACE INTO bank_table VALUES (?,?,?,?,1,?)",
                              (bank, parent, shares, float(priority), time.time()))
        self._tx(do)

    def list_banks(self, inactive: bool = False) -> list[dict]:
        q = "SELECT * FROM bank_table" + ("" if inactive else " WHERE active=1") + " ORDER BY bank"
        return [dict(r) for r in self.conn.execute(q)]

    # ----------------------------------------------------- associations
    def association(self, username: str, bank: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM association_table WHERE username=? AND bank=?",
                                (username, bank)).fetchone()
        return dict(row) if row else None

    def associations(self, username: str | None = None, inactive: bool = False) -> list[dict]:
        q, args = "SELECT * FROM association_table WHERE 1=1", []
        if username is not None:
            q += " AND username=?"
            args.append(username)
        if not inactive:
            q += " AND active=1"
        return [dict(r) for r in self.conn.execute(q + " ORDER BY username, bank", args)]

    def add_user(self, username: str, bank: str, userid: int | None = None, shares: int = 1,
                 max_running_jobs: int = 5, max_active_jobs: int = 7,
                 queues: str = "") -> dict:
        _name(username, "username")
        _name(bank, "bank")
        if userid is None:
            try:
                userid = pwd.getpwnam(username).pw_uid
            except KeyError:
                raise AccountingError(f"user {username} is unknown on this system;"
                                      " give its --userid", errno.ENOENT) from None
        _nonneg_int(userid, "userid")
        _nonneg_int(shares, "shares")
        _nonneg_int(max_running_jobs, "max_running_jobs")
        _nonneg_int(max_active_jobs, "max_active_jobs")
        if not isinstance(queues, str):
            raise AccountingError(f"queues must be a comma-separated string, not {queues!r}")

        def do():
            b = self.bank(bank)
            if b is None or not b["active"]:
                raise AccountingError(f"bank {bank} does not exist", errno.ENOENT)
            if self.conn.execute("SELECT 1 FROM bank_table WHERE parent_bank=? AND active=1",
                                 (bank,)).fetchone():
                raise AccountingError(f"bank {bank} has sub-banks; users belong in leaf banks")
            old = self.association(username, bank)
            if old is not None and old["active"]:
                raise AccountingError(f"user {username} is already in bank {bank}", errno.EEXIST)
            other = self.conn.execute("SELECT userid, default_bank FROM association_table"
                                      " WHERE username=? AND active=1", (username,)).fetchone()
            if other is not None and other["userid"] != userid:
                raise AccountingError(f"user {username} has userid {other['userid']}, not {userid}")
            default = other["default_bank"] if other is not None else bank
            now = time.time()
            usage, utime = (old["job_usage"], old["usage_time"]) if old else (0.0, now)
            self.conn.execute(
                "INSERT OR REPLACE INTO association_table VALUES (?,?,?,?,?,?,?,?,1,?,?,?,?)",
                (username, userid, bank, default, shares, max_running_jobs, max_active_jobs,
                 queues, usage, utime, now, now))
            return self.association(username, bank)
        return self._tx(do)

    def delete_user(self, username: str, bank: str, force: bool = False) -> None:
        """Deactivate (or with force, remove) an association; its usage is kept unless forced."""
        def do():
            a = self.association(username, bank)
            if a is None or (not a["active"] and not force):
                raise AccountingError(f"user {username} is not in bank {bank}", errno.ENOENT)
            if force:
                self.conn.execute("DELETE FROM association_table WHERE username=? AND bank=?",
                                  (username, bank))
            else:
                self.conn.execute("UPDATE association_table SET active=0, mod_time=? WHERE"
                                  " username=? AND bank=?", (time.time(), username, bank))
            rest = self.associations(username)
            if rest and all(r["default_bank"] == bank for r in rest):
                # the default bank went away: the first remaining bank becomes the default
                self.conn.execute("UPDATE association_table SET default_bank=? WHERE username=?",
                                  (rest[0]["bank"], username))
        self._tx(do)

    def edit_user(self, username: str, bank: str | None, changes: dict) -> list[dict]:
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise AccountingError(f"cannot edit {', '.join(unknown)} (editable: {', '.join(EDITABLE)})")
        if not changes:
            raise AccountingError("nothing to change")
        for k, v in changes.items():
            if k == "queues":
                if not isinstance(v, str):
                    raise AccountingError(f"queues must be a comma-separated string, not {v!r}")
            elif k == "default_bank":
                _name(v, "default bank")
            else:
                _nonneg_int(v, k)

        def do():
            rows = self.associations(username)
            if not rows:
                raise AccountingError(f"user {username} is not in the accounting database",
                                      errno.ENOENT)
            if bank is not None and not any(r["bank"] == bank for r in rows):
                raise AccountingError(f"user {username} is not in bank {bank}", errno.ENOENT)
            now = time.time()
            for k, v in changes.items():
                if k == "default_bank":
                    if not any(r["bank"] == v for r in rows):
                        raise AccountingError(f"default bank {v}: user {username} is not in it")
                    self.conn.execute("UPDATE association_table SET default_bank=?, mod_time=?"
                                      " WHERE username=?", (v, now, username))
                    continue
                q = f"UPDATE association_table SET {k}=?, mod_time=? WHERE username=?"
                args = [v, now, username]
                if bank is not None:
                    q += " AND bank=?"
                    args.append(bank)
                self.conn.execute(q, args)
            return self.associations(username)
        return self._tx(do)

    # ------------------------------------------------------------- usage
    def add_usage(self, record: dict, job_usage: float, usage_time: float) -> None:
        """Store a finished job and the association's new decayed usage (one transaction)."""
        def do():
            self.conn.execute("INSERT OR REPLACE INTO job_records VALUES (?,?,?,?,?,?,?,?,?)",
                              tuple(record[k] for k in ("jobid", "userid", "username", "bank",
                                                        "t_submit", "t_run", "t_inactive",
                                                        "ncores", "core_seconds")))
            self.conn.execute("UPDATE association_table SET job_usage=?, usage_time=? WHERE"
                              " username=? AND bank=?",
                              (job_usage, usage_time, record["username"], record["bank"]))
        self._tx(do)

    def set_usages(self, values: list[tuple[str, str, float, float]]) -> None:
        """[(username, bank, job_usage, usage_time)] in one transaction."""
        def do():
            self.conn.executemany("UPDATE association_table SET job_usage=?, usage_time=? WHERE"
                                  " username=? AND bank=?",
                                  [(u, t, n, b) for n, b, u, t in values])
        self._tx(do)

    def job_records(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM job_records")]
