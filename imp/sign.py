"""Signed requests J (RFC 39) with RFC 38 key-value headers, and the `ed25519` mechanism.

J = base64(header) "." base64(payload) "." signature. With `ed25519` the header also
carries `ctime` (signing time, seconds) and a random `nonce`, and the signature is
base64 of the Ed25519 signature over the ASCII text `HEADER.PAYLOAD`. Keys are PEM
files made by `flux keygen --user` (private: PKCS8, public: SubjectPublicKeyInfo).

This module is shared by the IMP and the broker's ingest, so both verify the same way;
it imports nothing of the broker.
"""

from __future__ import annotations

import base64
import binascii
import os
import time

MECH = "ed25519"


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


# ------------------------------------------------------------------ keys
def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new Ed25519 key."""
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())
    pub = key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


def load_private_key(path: str):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(path, "rb") as f:
        try:
            key = load_pem_private_key(f.read(), None)
        except (ValueError, TypeError) as exc:
            raise SignError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(data: bytes, where: str = "public key"):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(data)
    except ValueError as exc:
        raise SignError(f"{where}: not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignError(f"{where}: not an Ed25519 public key")
    return key


# ------------------------------------------------------------------ J
def sign(payload: bytes, userid: int, private_key, now: float | None = None) -> str:
    """J of `payload` signed by `userid` with an Ed25519 private key."""
    header = kv_encode({"version": 1, "userid": userid, "mechanism": MECH,
                        "ctime": int(time.time() if now is None else now),
                        "nonce": os.urandom(12).hex()})
    text = base64.b64encode(header) + b"." + base64.b64encode(payload)
    return (text + b"." + base64.b64encode(private_key.sign(text))).decode()


def verify(J: str, public_key, max_ttl: float, now: float | None = None) -> tuple[dict, bytes]:
    """(header, payload) of an `ed25519` J whose signature is valid and not older than
    `max_ttl` seconds; SignError naming the problem otherwise."""
    from cryptography.exceptions import InvalidSignature

    header, payload, sig = unwrap(J)
    if header["mechanism"] != MECH:
        raise SignError(f"J is signed with mechanism '{header['mechanism']}', not '{MECH}'")
    ctime = header.get("ctime")
    if not isinstance(ctime, int) or not isinstance(header.get("nonce"), str):
        raise SignError("J header lacks 'ctime' or 'nonce'")
    try:
        public_key.verify(base64.b64decode(sig, validate=True), J.rsplit(".", 1)[0].encode())
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignError(f"J signature does not verify with the key of uid {header['userid']} "
                        f"(forged, or altered after signing)") from None
    age = (time.time() if now is None else now) - ctime
    if age > max_ttl:
        raise SignError(f"J expired: signed {int(age)} s ago, the limit is {int(max_ttl)} s")
    if age < -60:
        raise SignError("J was signed in the future (clock skew over 60 s)")
    return header, payload
