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
    """Give `name` a signing key, made by `flux keygen --user` run as that user
    (~/.flux/curve/sig); returns the public key file."""
    pw = ensure_user(name)
    make_reachable(sys.executable, __file__)
    pub_path = os.path.join(pw.pw_dir, ".flux", "curve", "sig.pub")
    if not os.path.exists(pub_path):
        r = subprocess.run([os.path.join(BIN, "flux"), "keygen", "--user"], capture_output=True,
                           text=True, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                           cwd="/", env={"PATH": BIN + ":/usr/bin:/bin", "HOME": pw.pw_dir})
        if r.returncode != 0 and not os.path.exists(pub_path):  # lost a race: fine
            raise RuntimeError(f"flux keygen --user as {name}: {r.stderr}")
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


class SystemInstance:
    """A one-broker multi-user instance run by the unprivileged user `owner`, started
    from a TOML config (`flux start --conf=FILE`, its own private rundir, which the
    broker opens to guests), with the IMP set up for `users`.
    `inst.run(user, "flux", ...)` runs a command as that user with FLUX_URI set."""

    def __init__(self, owner: str = "flux", users: tuple = ("alice", "bob"), size: int = 1,
                 conf: dict | None = None, setattrs: tuple = (), with_imp: bool = True):
        self.imp = ImpSetup(owner=owner, users=users)
        pw = pwd.getpwnam(owner)
        data = {"access": {"allow-guest-user": True},
                "exec": {"imp": self.imp.path} if with_imp else {},
                "sign": {"max-ttl": 3600,
                         "keys": {u: user_keys(u) for u in users}}}
        for k, v in (conf or {}).items():
            data.setdefault(k, {}).update(v)
        self.conf = os.path.join(self.imp.dir, "instance.toml")
        with open(self.conf, "w") as f:
            f.write(toml(data))
        os.chmod(self.conf, 0o644)
        cmd = [os.path.join(BIN, "flux"), "start", f"--test-size={size}",
               f"--conf={self.conf}", *[f"-S{a}" for a in setattrs], "--", sys.executable, "-c",
               "import os,sys; print(os.environ['FLUX_URI'], flush=True); sys.stdin.read()"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd="/",
                                     env=self.env_for(owner), user=pw.pw_uid, group=pw.pw_gid,
                                     extra_groups=[])
        self.uri = self.proc.stdout.readline().strip()
        if not self.uri:
            err = self.proc.stderr.read()
            self.proc.wait()
            self.imp.remove()
            raise RuntimeError(f"instance failed to start: {err}")

    @staticmethod
    def env_for(user: str, **extra) -> dict:
        pw = pwd.getpwnam(user)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX_", "PYTHON"))}
        env.update(HOME=pw.pw_dir, USER=user, LOGNAME=user,
                   PATH=BIN + os.pathsep + os.environ.get("PATH", ""), **extra)
        return env

    def run(self, user: str, *args: str, input: str | None = None, timeout: float = 60,
            env: dict | None = None) -> subprocess.CompletedProcess:
        """`args` run as `user` (its uid, gid, no other group), FLUX_URI set."""
        pw = pwd.getpwnam(user)
        e = self.env_for(user, FLUX_URI=self.uri, **(env or {}))
        return subprocess.run(list(args), input=input, capture_output=True, text=True, env=e,
                              timeout=timeout, cwd=pw.pw_dir, user=pw.pw_uid, group=pw.pw_gid,
                              extra_groups=[])

    def flux(self, user: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(user, os.path.join(BIN, "flux"), *args, **kw)

    def stop(self, timeout: float = 60) -> int:
        try:  # even when flux start has exited: see conftest.Instance.stop
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr = self.proc.stderr.read()
        self.imp.remove()
        return self.proc.returncode
