"""flux-imp: the only privileged program (docs/imp.md).

    flux-imp exec SHELL [ARGS...]   stdin: {"J": J, "options"?: {"rank": N}}
    flux-imp run NAME               the command [run.NAME] of the config, as root
    flux-imp kill SIGNAL PID        signal a process the caller started through the IMP
    flux-imp version | whoami

Installed as a setuid-root shim (flux.imp.shim) that runs this file with `python -I`
and the caller's environment moved under FLUX_IMP_ENV_*; the real uid stays the
caller's, which must be in `exec.allowed-users`. Every refusal exits 1 with a message.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import pwd
import signal
import sys
import time

from .config import ImpError, check_secure, load, uids, user_key
from .sign import SignError, unwrap, verify

VERSION = "0.1.0"
DEFAULT_CONFIG = "/etc/flux/imp.toml"
DEFAULT_TTL = 1209600
MAX_INPUT = 64 << 20
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
JOB_ENV = ("FLUX_JOB_ID", "FLUX_JOB_USERID", "FLUX_JOB_RANKS")


def caller_env() -> dict[str, str]:
    if os.environ.get("FLUX_IMP_SHIM") == "1":
        n = len("FLUX_IMP_ENV_")
        return {k[n:]: v for k, v in os.environ.items() if k.startswith("FLUX_IMP_ENV_")}
    return dict(os.environ)


def privileged(conf: dict, allowed=None) -> int:
    """The caller's uid, once it is known to be allowed and we can change uid."""
    caller = os.getuid()
    if os.geteuid() != 0:
        raise ImpError("not running with privilege: install the setuid shim (docs/imp.md)")
    ex = conf.get("exec", {})
    if caller not in uids(ex.get("allowed-users", []) if allowed is None else allowed,
                          "allowed-users"):
        raise ImpError(f"uid {caller} is not allowed to use the IMP (exec.allowed-users)")
    return caller


def become(pw: pwd.struct_passwd) -> None:
    """Drop to pw's uid, gid and groups for good."""
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
    os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    if pw.pw_uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise ImpError("could not drop privileges")


# ------------------------------------------------------------------ exec
def cmd_exec(conf: dict, args: list[str]) -> int:
    privileged(conf)
    if not args:
        raise ImpError("usage: flux-imp exec SHELL [ARGS...]")
    shell = args[0]
    allowed = conf.get("exec", {}).get("allowed-shells", [])
    if not os.path.isabs(shell) or shell not in allowed:
        raise ImpError(f"shell {shell} is not in exec.allowed-shells")
    check_secure(shell, "shell")  # else the caller could swap in its own program
    try:
        req = json.loads(sys.stdin.buffer.read(MAX_INPUT))
        J, opts = req["J"], req.get("options") or {}
        rank = int(opts.get("rank", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ImpError(f"input must be JSON {{\"J\": J, \"options\"?: {{...}}}}: {exc!r}") from None
    try:
        header = unwrap(J)[0]
        pw = pwd.getpwuid(header["userid"])
    except SignError as exc:
        raise ImpError(str(exc)) from None
    except (KeyError, OverflowError, ValueError):
        raise ImpError(f"J is signed by uid {header['userid']}, unknown here") from None
    if pw.pw_uid == 0:
        raise ImpError("jobs never run as root")
    ttl = conf.get("sign", {}).get("max-ttl", DEFAULT_TTL)
    try:
        verify(J, user_key(conf, pw.pw_name), ttl)
    except SignError as exc:
        raise ImpError(str(exc)) from None
    not_replayed(conf, J, rank, ttl)
    # no LD_*, PYTHON*...: the caller must not inject code into the user's shell
    env = {k: v for k, v in caller_env().items()
           if k.startswith(("FLUX_", "LC_")) and not k.startswith("FLUX_IMP_")
           or k in ("PATH", "LANG", "TZ", "TERM")}
    env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name, SHELL=pw.pw_shell)
    env.setdefault("PATH", SAFE_PATH)
    become(pw)
    try:
        os.chdir(pw.pw_dir)
    except OSError:
        os.chdir("/")
    os.execve(shell, args, env)
    return 1


def not_replayed(conf: dict, J: str, rank: int, ttl: float) -> None:
    """Remember J (per broker rank) until it expires; refuse it a second time."""
    d = conf.get("exec", {}).get("replay-dir", "/var/lib/flux/imp")
    os.makedirs(d, mode=0o700, exist_ok=True)
    check_secure(os.path.join(d, "."), "replay-dir")
    now = time.time()
    for name in os.listdir(d):  # forget what expired
        p = os.path.join(d, name)
        try:
            if now - os.stat(p).st_mtime > ttl + 120:
                os.unlink(p)
        except OSError:
            pass
    key = hashlib.sha256(J.encode()).hexdigest() + f"-{rank}"
    try:
        os.close(os.open(os.path.join(d, key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        raise ImpError(f"J was already used on rank {rank} (replayed request)") from None


# ------------------------------------------------------------------- run
def cmd_run(conf: dict, args: list[str]) -> int:
    if len(args) != 1:
        raise ImpError("usage: flux-imp run NAME")
    name = args[0]
    entry = conf.get("run", {}).get(name)
    if not isinstance(entry, dict):
        raise ImpError(f"no [run.{name}] in the IMP config")
    caller = privileged(conf, entry.get("allowed-users"))
    cmd = entry.get("command", entry.get("path"))
    cmd = [cmd] if isinstance(cmd, str) else cmd
    if not cmd or not all(isinstance(c, str) for c in cmd) or not os.path.isabs(cmd[0]):
        raise ImpError(f"[run.{name}] command must be an absolute path or a list of strings")
    check_secure(cmd[0], f"[run.{name}] command")
    extra = entry.get("allowed-environment", [])
    env = {k: v for k, v in caller_env().items()
           if k in JOB_ENV or any(fnmatch.fnmatchcase(k, g) for g in extra)}
    env.update(PATH=SAFE_PATH, USER="root", HOME="/root", FLUX_OWNER_USERID=str(caller))
    become(pwd.getpwuid(0))
    os.chdir("/")
    os.execve(cmd[0], cmd, env)
    return 1


# ------------------------------------------------------------------ kill
def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, real uid) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{pid}/status") as f:
        uid = next(int(ln.split()[1]) for ln in f if ln.startswith("Uid:"))
    return ppid, uid


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(_stat(int(name))[0], []).append(int(name))
            except (OSError, ValueError, StopIteration):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cmd_kill(conf: dict, args: list[str]) -> int:
    caller = privileged(conf)
    try:
        sig = int(args[0]) if args[0].isdigit() else signal.Signals[
            args[0] if args[0].startswith("SIG") else "SIG" + args[0]].value
        pid = int(args[1])
    except (IndexError, KeyError, ValueError):
        pid = sig = 0
    if len(args) != 2 or not 0 < sig < 65 or pid <= 1:
        raise ImpError("usage: flux-imp kill SIGNAL PID")
    try:
        ppid, uid = _stat(pid)
    except (OSError, StopIteration, ValueError):
        raise ImpError(f"no process {pid}") from None
    # the caller's own children that changed uid: only the IMP made them
    if ppid != os.getppid():
        raise ImpError(f"process {pid} was not started through the IMP by the caller")
    job_users = uids(list(conf.get("sign", {}).get("keys", {})), "sign.keys")
    if uid == caller or (uid != 0 and uid not in job_users):
        raise ImpError(f"process {pid} (uid {uid}) is not a job shell or a run command")
    targets = descendants(pid) if sig == signal.SIGKILL else [pid]
    for p in targets:
        try:
            if p == pid or _stat(p)[1] == uid:
                os.kill(p, sig)
        except (OSError, StopIteration, ValueError):
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmds = {"exec": cmd_exec, "run": cmd_run, "kill": cmd_kill}
    try:
        if argv[:1] == ["version"]:
            print(f"flux-imp {VERSION}")
            return 0
        if argv[:1] == ["whoami"]:
            print(f"flux-imp: uid={os.getuid()} euid={os.geteuid()}")
            return 0
        if not argv or argv[0] not in cmds:
            raise ImpError("usage: flux-imp exec|run|kill|version|whoami ...")
        conf = load(os.environ.get("FLUX_IMP_CONFIG", DEFAULT_CONFIG))
        return cmds[argv[0]](conf, argv[1:])
    except ImpError as exc:
        print(f"flux-imp: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"flux-imp: {argv[0]}: {exc}", file=sys.stderr)
        return 1
