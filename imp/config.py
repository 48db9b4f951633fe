"""The IMP's configuration: one TOML file that only root may change (docs/imp.md).

    [exec]
    allowed-users = ["flux"]            # who may invoke the IMP: the instance owner
    allowed-shells = ["/usr/libexec/flux/flux-shell"]
    replay-dir = "/var/lib/flux/imp"    # J already run here (root-only directory)
    [sign]
    max-ttl = 1209600                   # seconds a signed J stays valid
    [sign.keys]
    alice = "/etc/flux/imp/keys/alice.pub"   # public keys (`flux keygen --user`)
    [run.prolog]
    command = "/etc/flux/prolog"        # or a list: ["/path", "arg", ...]
    allowed-environment = ["SLURM_*"]   # besides FLUX_JOB_ID, FLUX_JOB_USERID, FLUX_JOB_RANKS
"""

from __future__ import annotations

import os
import pwd
import stat
import tomllib


class ImpError(Exception):
    """A refusal; the message says why."""


def check_secure(path: str, what: str) -> None:
    """Refuse a file (and its directory) that someone other than root could change."""
    for p in (path, os.path.dirname(os.path.abspath(path))):
        try:
            st = os.stat(p)
        except OSError as exc:
            raise ImpError(f"{what} {p}: {exc.strerror}") from None
        if st.st_uid != 0:
            raise ImpError(f"{what} {p} is not owned by root")
        if st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
            raise ImpError(f"{what} {p} is writable by group or others")


def load(path: str) -> dict:
    check_secure(path, "config")
    try:
        with open(path, "rb") as f:
            conf = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImpError(f"config {path}: {exc}") from None
    for key in ("exec", "sign", "run"):
        if not isinstance(conf.get(key, {}), dict):
            raise ImpError(f"config {path}: [{key}] must be a table")
    return conf


def uids(names, what: str) -> set[int]:
    """User names (or numeric ids) of a config list, as uids."""
    if not isinstance(names, list):
        raise ImpError(f"config: {what} must be a list of user names")
    out = set()
    for n in names:
        try:
            out.add(n if isinstance(n, int) else pwd.getpwnam(n).pw_uid)
        except KeyError:
            continue  # a user that does not exist here allows nobody
    return out


def user_key(conf: dict, name: str):
    """The registered public key of user `name` (checked like the config), or ImpError."""
    from .sign import SignError, load_public_key

    keys = conf.get("sign", {}).get("keys", {})
    path = keys.get(name) if isinstance(keys, dict) else None
    if not isinstance(path, str):
        raise ImpError(f"no key registered for user {name} ([sign.keys] in the IMP config)")
    check_secure(path, "key file")
    try:
        with open(path, "rb") as f:
            return load_public_key(f.read(), path)
    except (OSError, SignError) as exc:
        raise ImpError(str(exc)) from None
