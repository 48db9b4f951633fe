"""RFC 11 tree objects, KVS key normalization and the KVS flag values.

Shared by the service (core) and the client side (`flux.kvs`, `flux kvs`), so both
validate keys and build tree objects the same way.
"""

from __future__ import annotations

import base64
import binascii
import errno
from typing import Any

from flux.core.errors import FluxError

# lookup / watch flags (flux-core enum kvs_op; READDIR is 1 and READLINK 2)
READDIR = 1
READLINK = 2
WATCH = 4
WAITCREATE = 8
TREEOBJ = 16
WATCH_FULL = 64
WATCH_UNIQ = 128
WATCH_APPEND = 256
STREAM = 512
WATCH_INITIAL_SENTINEL = 1024
# op flag
APPEND = 32
# commit flags
NO_MERGE = 1
SYNC = 4

TYPES = ("val", "valref", "dir", "dirref", "symlink", "hdir")
KEY_MAX = 65536  # sanity bound: real keys are tens of characters
# path components, nested directories included: bounds recursion, and keeps a whole
# tree object (2 JSON levels per directory) within orjson's nesting limit of 254
DEPTH_MAX = 100
PRIMARY = "primary"


def normalize_key(key: Any) -> tuple[str, bool]:
    """Return (normalized key, directory wanted) for a KVS key (SPEC 5.1).

    Runs of dots collapse, leading and trailing dots go; "" is the root (".").
    A trailing dot on a non-root key means the caller wants a directory.
    """
    if not isinstance(key, str):
        raise FluxError(errno.EINVAL, f"key must be a string, not {type(key).__name__}")
    if not key:
        raise FluxError(errno.EINVAL, "key must not be empty (use '.' for the root directory)")
    if len(key) > KEY_MAX:
        raise FluxError(errno.EINVAL, f"key is {len(key)} characters long (limit {KEY_MAX})")
    if "\0" in key:
        raise FluxError(errno.EINVAL, "key must not contain a NUL character")
    if "." not in key:
        return key, False
    parts = [p for p in key.split(".") if p]
    if len(parts) > DEPTH_MAX:
        raise FluxError(errno.EINVAL, f"key has {len(parts)} components (limit {DEPTH_MAX})")
    norm = ".".join(parts)
    return norm, bool(norm) and key.endswith(".")


def validate_namespace(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise FluxError(errno.EINVAL, "namespace name must be a non-empty string")
    if len(name) > 255 or any(c.isspace() or c in "/\0" for c in name):
        raise FluxError(errno.EINVAL, f"invalid namespace name {name[:64]!r} "
                                      "(no spaces, '/', or more than 255 characters)")
    return name


# -- constructors -------------------------------------------------------------
def val(data: bytes) -> dict:
    return {"ver": 1, "type": "val", "data": base64.b64encode(data).decode()}


def dir_(entries: dict | None = None) -> dict:
    return {"ver": 1, "type": "dir", "data": entries or {}}


def dirref(ref: str) -> dict:
    return {"ver": 1, "type": "dirref", "data": [ref]}


def valref(refs: list[str]) -> dict:
    return {"ver": 1, "type": "valref", "data": list(refs)}


def symlink(target: str, namespace: str | None = None) -> dict:
    d: dict = {"target": target}
    if namespace:
        d["namespace"] = namespace
    return {"ver": 1, "type": "symlink", "data": d}


# -- checks -------------------------------------------------------------------
def check(obj: Any, what: str = "tree object") -> str:
    """Validate the envelope of a tree object; return its type."""
    if not isinstance(obj, dict):
        raise FluxError(errno.EINVAL, f"{what} must be a JSON object")
    if obj.get("ver") != 1:
        raise FluxError(errno.EINVAL, f"{what}: unsupported version {obj.get('ver')!r} (expected 1)")
    t = obj.get("type")
    if t not in TYPES:
        raise FluxError(errno.EINVAL, f"{what}: unknown type {t!r}")
    if "data" not in obj:
        raise FluxError(errno.EINVAL, f"{what}: missing 'data'")
    return t


def decode_val(obj: dict, what: str = "val") -> bytes:
    data = obj.get("data")
    if not isinstance(data, str):
        raise FluxError(errno.EINVAL, f"{what}: data must be a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FluxError(errno.EINVAL, f"{what}: data is not valid base64") from None


def symlink_data(obj: dict) -> tuple[str, str | None]:
    d = obj.get("data")
    if not isinstance(d, dict) or not isinstance(d.get("target"), str) or not d["target"]:
        raise FluxError(errno.EINVAL, "symlink: data must be {target: non-empty string, namespace?}")
    ns = d.get("namespace")
    if ns is not None:
        validate_namespace(ns)
    return d["target"], ns


def refs_of(obj: dict, what: str) -> list[str]:
    d = obj.get("data")
    if not isinstance(d, list) or not all(isinstance(r, str) and "-" in r for r in d):
        raise FluxError(errno.EINVAL, f"{what}: data must be an array of blobrefs")
    return d
