"""Signed job requests J (RFC 39) with RFC 38 key-value headers.

J = base64(header) "." base64(payload) "." signature. The `none` mechanism (single
user) signs with the literal `none`; multi-user mechanisms plug in by name.
"""

from __future__ import annotations

import base64
import binascii


class SignError(ValueError):
    """J does not decode or verify; the message names the problem."""


def kv_encode(d: dict) -> bytes:
    out = bytearray()
    for k, v in d.items():
        if isinstance(v, bool):
            enc = "b" + ("true" if v else "false")
        elif isinstance(v, int):
            enc = f"i{v}"
        elif isinstance(v, float):
            enc = f"d{v:.6f}"
        else:
            enc = "s" + str(v)
        out += k.encode() + b"\0" + enc.encode() + b"\0"
    return bytes(out)


def kv_decode(data: bytes) -> dict:
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) % 2:
        raise SignError("J header: odd number of key/value fields")
    out: dict = {}
    for i in range(0, len(parts), 2):
        key = parts[i].decode(errors="replace")
        raw = parts[i + 1].decode(errors="replace")
        if not raw:
            raise SignError(f"J header: key '{key}' has no type code")
        t, v = raw[0], raw[1:]
        try:
            if t == "i":
                out[key] = int(v)
            elif t == "d":
                out[key] = float(v)
            elif t == "b":
                out[key] = v == "true"
            elif t in ("s", "t"):
                out[key] = v
            else:
                raise SignError(f"J header: key '{key}' has unknown type code '{t}'")
        except ValueError:
            raise SignError(f"J header: key '{key}' value '{v}' is not of type '{t}'") from None
    return out


def wrap_none(payload: bytes, userid: int) -> str:
    header = kv_encode({"version": 1, "userid": userid, "mechanism": "none"})
    return (base64.b64encode(header).decode() + "." + base64.b64encode(payload).decode() + ".none")


def unwrap(J: str) -> tuple[dict, bytes, str]:
    """(header, payload, signature) of J, without verifying the signature."""
    if not isinstance(J, str):
        raise SignError("J must be a string")
    parts = J.split(".")
    if len(parts) != 3:
        raise SignError("J must have three '.'-separated parts (header.payload.signature)")
    try:
        header = kv_decode(base64.b64decode(parts[0], validate=True))
        payload = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, SignError):
            raise
        raise SignError(f"J is not valid base64: {exc}") from None
    for key, typ in (("version", int), ("userid", int), ("mechanism", str)):
        if not isinstance(header.get(key), typ):
            raise SignError(f"J header lacks '{key}'")
    if header["version"] != 1:
        raise SignError(f"J header version {header['version']} is not supported")
    return header, payload, parts[2]


def verify_none(J: str, real_userid: int) -> tuple[dict, bytes]:
    header, payload, sig = unwrap(J)
    if header["mechanism"] != "none" or sig != "none":
        raise SignError(f"signing mechanism '{header['mechanism']}' is not accepted here")
    if header["userid"] != real_userid:
        raise SignError(f"J was signed as uid {header['userid']} but sent by uid {real_userid}")
    return header, payload
