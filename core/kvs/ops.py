"""Builders of commit ops for code inside the broker (`await broker.kvs.commit_ops(...)`).

Values travel as raw bytes (`raw`), which skips the base64 of RFC 11 `val` objects;
the `kvs.commit` RPC takes the same ops with a `dirent` tree object instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flux.core.kvs import treeobj as T


def put(key: str, data: bytes) -> dict:
    return {"key": key, "flags": 0, "raw": data}


def put_json(key: str, value: Any) -> dict:
    """Store `value` as compact JSON text (what flux.kvs.get decodes)."""
    return {"key": key, "flags": 0, "raw": dumps(value)}


def append(key: str, data: bytes) -> dict:
    return {"key": key, "flags": T.APPEND, "raw": data}


def unlink(key: str) -> dict:
    return {"key": key, "flags": 0, "dirent": None}


def mkdir(key: str) -> dict:
    return {"key": key, "flags": 0, "dirent": T.dir_()}


def symlink(key: str, target: str, namespace: str | None = None) -> dict:
    return {"key": key, "flags": 0, "dirent": T.symlink(target, namespace)}


def put_treeobj(key: str, obj: dict) -> dict:
    return {"key": key, "flags": 0, "dirent": obj}


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def eventlog_entry(name: str, context: dict | None = None, timestamp: float | None = None) -> bytes:
    """One RFC 18 eventlog line, ready to append."""
    e: dict = {"timestamp": time.time() if timestamp is None else timestamp, "name": name}
    if context:
        e["context"] = context
    return dumps(e) + b"\n"


def append_event(key: str, name: str, context: dict | None = None,
                 timestamp: float | None = None) -> dict:
    return append(key, eventlog_entry(name, context, timestamp))
