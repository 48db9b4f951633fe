"""Signed job requests J (RFC 39) with RFC 38 key-value headers.

J = base64(header) "." base64(payload) "." signature. The `none` mechanism (single
user) signs with the literal `none`; multi-user instances use `ed25519`, whose code
lives in flux.imp.sign so that ingest and the IMP verify the same way.
"""

from __future__ import annotations

import base64
import os

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


class Verifier:
    """Ingest's check of J (SPEC 8.1): the header uid must be the sender's; the owner may
    sign with `none`; guests with a mechanism of `[sign] allowed-types` (default
    `ed25519` only when `exec.imp` is set, else also `none`), `ed25519` verified with the
    user's key from `[sign.keys]` and `[sign] max-ttl` (default 14 days)."""

    def __init__(self, conf: dict):
        sign = conf.get("sign", {})
        imp = conf.get("exec", {}).get("imp")
        self.allowed = sign.get("allowed-types", ["ed25519"] if imp else ["none", "ed25519"])
        self.keys = sign.get("keys", {})
        self.max_ttl = sign.get("max-ttl", 1209600)
        self.error = ""  # a bad [sign] refuses every guest job, naming it; the broker stays up
        if not isinstance(self.allowed, list) or not isinstance(self.keys, dict) \
                or not isinstance(self.max_ttl, int | float):
            self.error = ("instance configuration error: [sign] allowed-types must be a list, "
                          "keys a table, max-ttl a number")
            self.allowed, self.keys = [], {}
        self.cache: dict[str, tuple[float, object]] = {}

    def _key(self, userid: int):
        import pwd

        from flux.imp.sign import load_public_key

        try:
            name = pwd.getpwuid(userid).pw_name
        except KeyError:
            raise SignError(f"uid {userid} has no user name here") from None
        path = self.keys.get(name)
        if not isinstance(path, str):
            raise SignError(f"no signing key registered for user {name} ([sign.keys] in the "
                            f"instance config; see `flux keygen --user`)")
        try:
            mtime = os.stat(path).st_mtime
            hit = self.cache.get(path)
            if hit is None or hit[0] != mtime:
                with open(path, "rb") as f:
                    hit = self.cache[path] = (mtime, load_public_key(f.read(), path))
        except OSError as exc:
            raise SignError(f"signing key of user {name}: {path}: {exc.strerror}") from None
        return hit[1]

    def verify(self, J: str, userid: int, owner: bool) -> bytes:
        """The payload of J sent by `userid`; SignError naming the problem otherwise."""
        from flux.imp.sign import MECH, verify

        header, payload, sig = unwrap(J)
        mech = header["mechanism"]
        if header["userid"] != userid:
            raise SignError(f"J was signed as uid {header['userid']} but sent by uid {userid}")
        if mech == "none" and (owner or "none" in self.allowed):
            if sig != "none":
                raise SignError("a J of mechanism 'none' must have the signature 'none'")
            return payload
        if self.error and not owner:
            raise SignError(self.error)
        if mech != MECH or mech not in self.allowed and not owner:
            allowed = ", ".join(self.allowed)
            raise SignError(f"signing mechanism '{mech}' is not accepted (allowed: {allowed}); "
                            f"create a key with `flux keygen --user` and have it registered")
        return verify(J, self._key(userid), self.max_ttl)[1]
