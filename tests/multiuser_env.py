"""Helpers for tests that need root: real users, user signing keys, an IMP set up with
its setuid shim and root-only config. Usable by any test (prolog/epilog too):

    imp = ImpSetup(owner="flux", users=["alice"], run={"prolog": ["/path/script"]})
    imp.path     # the setuid flux-imp shim, runnable by the owner
    imp.conf     # its config (TOML), imp.write_conf(**changes) rewrites it
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

BIN = os.path.dirname(sys.executable)
ROOT = os.getuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: creates users and a setuid IMP")


def make_reachable(*paths: str) -> None:
    """Let other users reach the interpreter and the code (e.g. a Python installed under
    a 0700 /root): add the search (x) bit for others to every directory above `paths`
    that lacks it. Nothing becomes readable that was not: only traversal."""
    for path in paths:
        d = os.path.dirname(os.path.realpath(path))
        while d != "/":
            st = os.stat(d)
            if not st.st_mode & 0o001:
                os.chmod(d, st.st_mode | 0o001)
            d = os.path.dirname(d)


def ensure_user(name: str) -> pwd.struct_passwd:
    """The user `name`, created (with a home directory) if missing. Safe to race with
    other test processes doing the same."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    r = subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], capture_output=True, text=True)
    if r.returncode not in (0, 9):  # 9: already exists (created meanwhile)
        raise RuntimeError(f"useradd {name}: {r.stderr}")
    return pwd.getpwnam(name)


def user_keys(name: str) -> str:
    """Give `name` a signing key in ~/.flux/curve/sig (as `flux keygen --user` does);
    returns the public key file."""
    from flux.imp.sign import generate_keypair

    pw = ensure_user(name)
    d = os.path.join(pw.pw_dir, ".flux", "curve")
    priv_path, pub_path = os.path.join(d, "sig"), os.path.join(d, "sig.pub")
    if not os.path.exists(priv_path):
        os.makedirs(d, exist_ok=True)
        priv, pub = generate_keypair()
        with open(os.open(priv_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb") as f:
            f.write(priv)
        with open(pub_path, "wb") as f:
            f.write(pub)
        for p in (os.path.join(pw.pw_dir, ".flux"), d, priv_path, pub_path):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    return pub_path


def toml(d: dict, prefix: str = "") -> str:
    """A small TOML writer for config dicts of strings, numbers, bools, lists, tables."""
    import json

    out, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            out.append(f'"{k}" = {json.dumps(v)}')
    text = "\n".join(out) + "\n"
    for k, v in tables:
        name = f"{prefix}.{k}" if prefix else k
        text += f"[{name}]\n" + toml(v, name)
    return text


class ImpSetup:
    """A private IMP: shim, config, key copies and replay directory in a root-owned
    directory, the shim runnable by everyone (mode 4755) so refusals can be shown."""

    def __init__(self, owner: str = "flux", users: tuple = ("alice", "bob"),
                 run: dict | None = None, **conf):
        from flux.imp.shim import build

        ensure_user(owner)
        make_reachable(sys.executable, __file__)
        self.dir = tempfile.mkdtemp(prefix="flux-imp-")
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "imp.toml")
        keys = {}
        for u in users:
            keys[u] = os.path.join(self.dir, f"{u}.pub")
            shutil.copyfile(user_keys(u), keys[u])
        self.shell = os.path.join(BIN, "flux-shell")
        self.data = {"exec": {"allowed-users": [owner], "allowed-shells": [self.shell],
                              "replay-dir": os.path.join(self.dir, "replay")},
                     "sign": {"max-ttl": 3600, "keys": keys},
                     "run": {n: {"command": c} for n, c in (run or {}).items()}}
        for k, v in conf.items():
            self.data.setdefault(k, {}).update(v)
        self.write_conf()
        self.path = os.path.join(self.dir, "flux-imp")
        build(self.path, self.conf, mode=0o4755)

    def write_conf(self, data: dict | None = None) -> None:
        with open(self.conf, "w") as f:
            f.write(toml(self.data if data is None else data))
        os.chmod(self.conf, 0o644)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
