"""Signed job requests J (RFC 39) with RFC 38 key-value headers.

J = base64(header) "." base64(payload) "." signature. The `none` mechanism (single
user) signs with the literal `none`; multi-user instances use `ed25519`, whose code
lives in flux.imp.sign so that ingest and the IMP verify the same way.
"""

from __future__ import annotations

import base64

from flux.imp.sign import SignError, kv_decode, kv_encode, unwrap

__all__ = ["SignError", "kv_decode", "kv_encode", "unwrap", "verify_none", "wrap_none"]


def wrap_none(payload: bytes, userid: int) -> str:
    header = kv_encode({"version": 1, "userid": userid, "mechanism": "none"})
    return (base64.b64encode(header).decode() + "." + base64.b64encode(payload).decode() + ".none")


def verify_none(J: str, real_userid: int) -> tuple[dict, bytes]:
    header, payload, sig = unwrap(J)
    if header["mechanism"] != "none" or sig != "none":
        raise SignError(f"signing mechanism '{header['mechanism']}' is not accepted here")
    if header["userid"] != real_userid:
        raise SignError(f"J was signed as uid {header['userid']} but sent by uid {real_userid}")
    return header, payload
