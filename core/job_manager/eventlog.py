"""RFC 18 eventlog entries: one compact JSON object per line."""

from __future__ import annotations

import time
from typing import Any

import orjson


def entry(name: str, context: dict | None = None, timestamp: float | None = None) -> dict:
    e: dict[str, Any] = {"timestamp": timestamp if timestamp is not None else time.time(), "name": name}
    if context:
        e["context"] = context
    return e


def encode(e: dict) -> bytes:
    return orjson.dumps(e) + b"\n"


def decode(text: str | bytes) -> list[dict]:
    """Entries of an eventlog; ValueError names the bad line."""
    out = []
    if isinstance(text, bytes):
        text = text.decode()
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"eventlog line {i} is not JSON: {exc}") from None
        if not isinstance(e, dict) or "name" not in e or "timestamp" not in e:
            raise ValueError(f"eventlog line {i} lacks name or timestamp")
        out.append(e)
    return out


def format_text(e: dict, t0: float | None = None, mode: str = "raw") -> str:
    """`%f name k=v ...` as `flux job eventlog` prints it (SPEC 4.1)."""
    ts = e["timestamp"]
    if mode == "offset" and t0 is not None:
        stamp = f"{ts - t0:f}"
    elif mode == "iso":
        lt = time.localtime(ts)
        off = time.strftime("%z", lt)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f".{int(ts % 1 * 1e6):06d}" + off[:3] + ":" + off[3:]
    else:
        stamp = f"{ts:f}"
    parts = [stamp, e["name"]]
    for k, v in (e.get("context") or {}).items():
        parts.append(f"{k}={orjson.dumps(v).decode()}")
    return " ".join(parts)
