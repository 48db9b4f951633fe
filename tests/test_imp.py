"""The IMP through its real setuid shim, called by a real unprivileged instance owner
(`flux`): what it runs, as whom, and every refusal."""

from __future__ import annotations

import base64
import json
import os
import pwd
import select
import signal
import subprocess
import sys
import time

import pytest
from flux.imp.sign import kv_encode, load_private_key, sign
from multiuser_env import ImpSetup, ensure_user, needs_root

pytestmark = [needs_root]


@pytest.fixture(scope="module")
def imp():
    s = ImpSetup(owner="flux", users=("alice", "bob"))
    yield s
    s.remove()


def J_of(user: str, payload: bytes = b'{"version": 1}', now: float | None = None,
         as_uid: int | None = None) -> str:
    pw = pwd.getpwnam(user)
    key = load_private_key(os.path.join(pw.pw_dir, ".flux", "curve", "sig"))
    return sign(payload, pw.pw_uid if as_uid is None else as_uid, key, now)


def call(imp: ImpSetup, user: str, *args: str, J: str | None = None, rank: int = 0,
         env: dict | None = None) -> subprocess.CompletedProcess:
    inp = None if J is None else json.dumps({"J": J, "options": {"rank": rank}})
    e = dict(os.environ, **(env or {}))
    return subprocess.run(["runuser", "-u", user, "--", imp.path, *args], input=inp,
                          capture_output=True, text=True, env=e, timeout=60)


def allow_shell(imp: ImpSetup, *shells: str) -> None:
    imp.data["exec"]["allowed-shells"] = [imp.shell, *shells]
    imp.write_conf()


def test_exec_runs_shell_as_signer_with_groups(imp):
    ensure_user("alice")
    subprocess.run(["groupadd", "-f", "fluximpgrp"], check=True)
    subprocess.run(["usermod", "-aG", "fluximpgrp", "alice"], check=True)
    allow_shell(imp, "/usr/bin/id")
    r = call(imp, "flux", "exec", "/usr/bin/id", J=J_of("alice"))
    assert r.returncode == 0, r.stderr
    a = pwd.getpwnam("alice")
    assert f"uid={a.pw_uid}(alice) gid={a.pw_gid}" in r.stdout
    assert "fluximpgrp" in r.stdout  # supplementary groups from initgroups
    assert "euid" not in r.stdout  # no effective uid left over


def test_exec_environment_is_filtered(imp):
    allow_shell(imp, "/usr/bin/env")
    r = call(imp, "flux", "exec", "/usr/bin/env", J=J_of("bob"),
             env={"LD_PRELOAD": "/tmp/evil.so", "PYTHONPATH": "/tmp/evil", "FLUX_URI": "local://x"})
    assert r.returncode == 0, r.stderr
    env = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert env["FLUX_URI"] == "local://x"
    assert env["USER"] == "bob" and env["HOME"] == pwd.getpwnam("bob").pw_dir
    assert "LD_PRELOAD" not in env and "PYTHONPATH" not in env


def test_refuses_caller_not_allowed(imp):
    r = call(imp, "alice", "exec", imp.shell, J=J_of("alice"))
    assert r.returncode == 1
    assert "is not allowed to use the IMP" in r.stderr


def test_refuses_unprivileged_run(imp):
    # the Python entry point without the setuid shim has no privilege to give
    r = subprocess.run(["runuser", "-u", "flux", "--", os.path.join(os.path.dirname(sys.executable),
                        "flux-imp"), "exec", imp.shell], capture_output=True, text=True,
                       env=dict(os.environ, FLUX_IMP_CONFIG=imp.conf), input="{}")
    assert r.returncode == 1 and "not running with privilege" in r.stderr


def test_refuses_disallowed_shell(imp):
    allow_shell(imp)
    r = call(imp, "flux", "exec", "/bin/sh", "-c", "id", J=J_of("alice"))
    assert r.returncode == 1 and "/bin/sh is not in exec.allowed-shells" in r.stderr
    r = call(imp, "flux", "exec", "sh", J=J_of("alice"))
    assert r.returncode == 1 and "not in exec.allowed-shells" in r.stderr


def test_refuses_forged_signature(imp):
    allow_shell(imp, "/usr/bin/id")
    # bob signs a request that claims to come from alice
    forged = J_of("bob", as_uid=pwd.getpwnam("alice").pw_uid)
    r = call(imp, "flux", "exec", "/usr/bin/id", J=forged)
    assert r.returncode == 1 and "does not verify" in r.stderr
    # garbage signature
    h, p, _s = J_of("alice").split(".")
    r = call(imp, "flux", "exec", "/usr/bin/id", J=f"{h}.{p}.{base64.b64encode(b'x' * 64).decode()}")
    assert r.returncode == 1 and "does not verify" in r.stderr


def test_refuses_altered_jobspec(imp):
    allow_shell(imp, "/usr/bin/id")
    h, _p, s = J_of("alice", b'{"tasks": [{"command": ["true"]}]}').split(".")
    evil = base64.b64encode(b'{"tasks": [{"command": ["rm", "-rf", "~"]}]}').decode()
    r = call(imp, "flux", "exec", "/usr/bin/id", J=f"{h}.{evil}.{s}")
    assert r.returncode == 1 and "does not verify" in r.stderr and "altered" in r.stderr


def test_refuses_altered_header(imp):
    allow_shell(imp, "/usr/bin/id")
    _h, p, s = J_of("alice").split(".")
    header = kv_encode({"version": 1, "userid": pwd.getpwnam("bob").pw_uid,
                        "mechanism": "ed25519", "ctime": int(time.time()), "nonce": "00"})
    r = call(imp, "flux", "exec", "/usr/bin/id", J=f"{base64.b64encode(header).decode()}.{p}.{s}")
    assert r.returncode == 1 and "does not verify" in r.stderr


def test_refuses_replayed_J(imp):
    allow_shell(imp, "/usr/bin/id")
    J = J_of("alice")
    assert call(imp, "flux", "exec", "/usr/bin/id", J=J).returncode == 0
    r = call(imp, "flux", "exec", "/usr/bin/id", J=J)
    assert r.returncode == 1 and "replayed" in r.stderr
    # the same job's shell on another broker rank is not a replay
    assert call(imp, "flux", "exec", "/usr/bin/id", J=J, rank=1).returncode == 0


def test_refuses_expired_J(imp):
    allow_shell(imp, "/usr/bin/id")
    r = call(imp, "flux", "exec", "/usr/bin/id", J=J_of("alice", now=time.time() - 7200))
    assert r.returncode == 1 and "expired" in r.stderr


def test_refuses_unknown_key(imp):
    ensure_user("carol")
    from multiuser_env import user_keys

    user_keys("carol")  # has a key, but it is not registered with the IMP
    allow_shell(imp, "/usr/bin/id")
    r = call(imp, "flux", "exec", "/usr/bin/id", J=J_of("carol"))
    assert r.returncode == 1 and "no key registered for user carol" in r.stderr


def test_refuses_root_job_and_none_mechanism(imp):
    allow_shell(imp, "/usr/bin/id")
    from flux.core.security.sign import wrap_none

    r = call(imp, "flux", "exec", "/usr/bin/id", J=wrap_none(b"{}", pwd.getpwnam("alice").pw_uid))
    assert r.returncode == 1 and "mechanism 'none'" in r.stderr
    r = call(imp, "flux", "exec", "/usr/bin/id", J=wrap_none(b"{}", 0))
    assert r.returncode == 1 and "never run as root" in r.stderr
    r = call(imp, "flux", "exec", "/usr/bin/id", J="not a J")
    assert r.returncode == 1 and "three '.'-separated parts" in r.stderr


@pytest.mark.parametrize("how", ["config-writable", "config-not-root", "key-writable",
                                 "dir-writable"])
def test_refuses_insecure_files(how):
    s = ImpSetup(owner="flux", users=("alice",))
    try:
        target = {"config-writable": s.conf, "config-not-root": s.conf, "dir-writable": s.dir,
                  "key-writable": s.data["sign"]["keys"]["alice"]}[how]
        if how == "config-not-root":
            os.chown(target, pwd.getpwnam("flux").pw_uid, -1)
        else:
            os.chmod(target, os.stat(target).st_mode | 0o002)
        r = call(s, "flux", "exec", s.shell, J=J_of("alice"))
        assert r.returncode == 1
        assert ("is not owned by root" if how == "config-not-root"
                else "is writable by group or others") in r.stderr
    finally:
        s.remove()


# ------------------------------------------------------------------- run
def test_run_as_root_with_filtered_environment(imp, tmp_path):
    script = os.path.join(imp.dir, "prolog")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nid -u\nenv | sort\n")
    os.chmod(script, 0o755)
    imp.data["run"] = {"prolog": {"command": script, "allowed-environment": ["SITE_*"]},
                       "nobody": {"command": script, "allowed-users": []}}
    imp.write_conf()
    r = call(imp, "flux", "run", "prolog", env={"FLUX_JOB_ID": "f123", "FLUX_JOB_USERID": "1002",
                                                 "SITE_X": "1", "SECRET": "no", "LD_PRELOAD": "x"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert env["FLUX_JOB_ID"] == "f123" and env["FLUX_JOB_USERID"] == "1002"
    assert env["SITE_X"] == "1" and env["USER"] == "root"
    assert env["FLUX_OWNER_USERID"] == str(pwd.getpwnam("flux").pw_uid)
    assert "SECRET" not in env and "LD_PRELOAD" not in env
    # refusals: a guest, an unknown name, a per-command allow list, a writable script
    assert "not allowed" in call(imp, "alice", "run", "prolog").stderr
    assert "no [run.epilog]" in call(imp, "flux", "run", "epilog").stderr
    assert "not allowed" in call(imp, "flux", "run", "nobody").stderr
    os.chmod(script, 0o777)
    r = call(imp, "flux", "run", "prolog")
    assert r.returncode == 1 and "writable by group or others" in r.stderr


# ------------------------------------------------------------------ kill
DRIVER = r"""
import json, os, subprocess, sys, time
imp, J, how = sys.argv[1], sys.argv[2], sys.argv[3]
p = subprocess.Popen([imp, "exec", "/bin/sh", "-c", "sleep 300 & echo $!; wait"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                     text=True)
p.stdin.write(json.dumps({"J": J}))
p.stdin.close()
child = int(p.stdout.readline())
out = {"shell": p.pid, "child": child}
if how == "self-kill":  # the owner cannot signal the user's shell itself
    try:
        os.kill(p.pid, 15)
        out["self"] = "ok"
    except PermissionError:
        out["self"] = "EPERM"
    how = "KILL"
r = subprocess.run([imp, "kill", how, str(p.pid)], capture_output=True, text=True)
out["kill"] = [r.returncode, r.stderr]
r = subprocess.run([imp, "kill", "TERM", str(os.getppid())], capture_output=True, text=True)
out["kill1"] = [r.returncode, r.stderr]
out["status"] = p.wait(timeout=30)
print(json.dumps(out), flush=True)
"""


def _gone(pid: int, timeout: float) -> bool:
    """Whether process `pid` (not our child) exits within `timeout` s (a pidfd wait)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["TERM", "self-kill"])
def test_kill_signals_only_shells_it_started(imp, how):
    allow_shell(imp, "/bin/sh")
    driver = os.path.join(imp.dir, "driver.py")
    with open(driver, "w") as f:
        f.write(DRIVER)
    r = subprocess.run(["runuser", "-u", "flux", "--", sys.executable, driver, imp.path,
                        J_of("alice"), how], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["kill"][0] == 0, out
    assert out["kill1"][0] == 1 and "not started through the IMP" in out["kill1"][1]
    if how == "TERM":
        assert out["status"] == -signal.SIGTERM
        assert not _gone(out["child"], 0)  # plain signals go to the shell only
        os.kill(out["child"], 9)
    else:
        assert out["self"] == "EPERM"
        assert out["status"] == -signal.SIGKILL
        assert _gone(out["child"], 10)  # SIGKILL takes the shell's whole tree


def test_keygen_user_makes_a_private_key_pair():
    ensure_user("dave")
    pw = pwd.getpwnam("dave")
    subprocess.run(["rm", "-rf", os.path.join(pw.pw_dir, ".flux")], check=True)
    from multiuser_env import BIN, user_keys

    pub = user_keys("dave")
    priv = pub[:-len(".pub")]
    st = os.stat(priv)
    assert st.st_uid == pw.pw_uid and st.st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(priv)).st_mode & 0o777 == 0o700
    from flux.imp.sign import load_public_key, verify

    with open(pub, "rb") as f:
        key = load_public_key(f.read())
    assert verify(J_of("dave"), key, 60)[0]["userid"] == pw.pw_uid
    # never replaces a key
    r = subprocess.run([os.path.join(BIN, "flux"), "keygen", "--user"], capture_output=True,
                       text=True, user=pw.pw_uid, group=pw.pw_gid, cwd="/")
    assert r.returncode == 1 and "File exists" in r.stderr
    with open(pub, "rb") as f:
        assert load_public_key(f.read()).public_bytes_raw() == key.public_bytes_raw()


def test_refuses_a_shell_others_can_change(imp):
    shell = os.path.join(imp.dir, "myshell")
    with open(shell, "w") as f:
        f.write("#!/bin/sh\nid -u\n")
    os.chmod(shell, 0o777)
    allow_shell(imp, shell)
    r = call(imp, "flux", "exec", shell, J=J_of("alice"))
    assert r.returncode == 1 and "writable by group or others" in r.stderr
    os.chmod(shell, 0o755)
    r = call(imp, "flux", "exec", shell, J=J_of("alice"))
    assert r.returncode == 0 and r.stdout.strip() == str(pwd.getpwnam("alice").pw_uid)
