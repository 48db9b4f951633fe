"""Ed25519 J signing (flux.imp.sign) and ingest's Verifier, without privilege."""

from __future__ import annotations

import base64
import os
import pwd

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from flux.core.security.sign import SignError, Verifier, wrap_none
from flux.imp.sign import generate_keypair, kv_decode, load_public_key, sign, unwrap, verify

ME = os.getuid()
NAME = pwd.getpwuid(ME).pw_name


@pytest.fixture
def keys(tmp_path):
    priv, pub = generate_keypair()
    path = tmp_path / "me.pub"
    path.write_bytes(pub)
    return load_pem_private_key(priv, None), load_public_key(pub), str(path)


def test_sign_verify_roundtrip_and_header(keys):
    priv, pub, _ = keys
    J = sign(b'{"a": 1}', ME, priv, now=1000)
    header, payload, _sig = unwrap(J)
    assert payload == b'{"a": 1}'
    assert header["mechanism"] == "ed25519" and header["userid"] == ME
    assert header["ctime"] == 1000 and len(header["nonce"]) == 24
    assert kv_decode(base64.b64decode(J.split(".")[0]))["version"] == 1
    assert verify(J, pub, 60, now=1030) == (header, payload)
    # two signatures of the same jobspec differ (nonce): each J is unique
    assert sign(b"x", ME, priv, now=1000) != sign(b"x", ME, priv, now=1000)


def test_verify_refuses_tampering_and_age(keys):
    priv, pub, _ = keys
    J = sign(b'{"a": 1}', ME, priv, now=1000)
    h, _p, s = J.split(".")
    altered = base64.b64encode(b'{"a": 2}').decode()
    with pytest.raises(SignError, match="altered after signing"):
        verify(f"{h}.{altered}.{s}", pub, 60, now=1000)
    with pytest.raises(SignError, match="does not verify"):
        verify(J, load_public_key(generate_keypair()[1]), 60, now=1000)
    with pytest.raises(SignError, match="expired"):
        verify(J, pub, 60, now=1061)
    with pytest.raises(SignError, match="in the future"):
        verify(J, pub, 60, now=900)
    with pytest.raises(SignError, match="not 'ed25519'"):
        verify(wrap_none(b"{}", ME), pub, 60)
    with pytest.raises(SignError, match="not a PEM public key"):
        load_public_key(b"junk")


def test_verifier_rules(keys):
    priv, _pub, path = keys
    multi = Verifier({"exec": {"imp": "/x/flux-imp"}, "sign": {"keys": {NAME: path}}})
    J = sign(b"{}", ME, priv)
    assert multi.verify(J, ME, owner=False) == b"{}"
    assert multi.verify(wrap_none(b"{}", ME), ME, owner=True) == b"{}"  # the owner's way
    with pytest.raises(SignError, match="mechanism 'none' is not accepted"):
        multi.verify(wrap_none(b"{}", ME), ME, owner=False)
    with pytest.raises(SignError, match="signed as uid"):
        multi.verify(J, ME + 1, owner=False)
    with pytest.raises(SignError, match="no signing key registered"):
        Verifier({"exec": {"imp": "/x"}}).verify(J, ME, owner=False)
    # no IMP: guests may still sign with none (their jobs cannot run anyway)
    assert Verifier({}).verify(wrap_none(b"{}", ME), ME, owner=False) == b"{}"
    bad = Verifier({"sign": {"allowed-types": "ed25519"}})
    with pytest.raises(SignError, match="instance configuration error"):
        bad.verify(J, ME, owner=False)
    assert bad.verify(wrap_none(b"{}", ME), ME, owner=True) == b"{}"
