"""Two real users share one instance run by the unprivileged user `flux`: jobs run as
their owners through the IMP, each user sees every job's public info but reads and
controls only their own, and every refusal is an EPERM with a clear message."""

from __future__ import annotations

import json
import pwd
import sys

import pytest
from multiuser_env import SystemInstance, ensure_user, needs_root, user_keys

pytestmark = [needs_root]

MAX_CONN = 12


@pytest.fixture(scope="module")
def inst():
    s = SystemInstance(owner="flux", users=("alice", "bob"),
                       conf={"access": {"max-user-connections": MAX_CONN}},
                       setattrs=("broker.max-message-size=1048576",))
    yield s
    s.stop()


def uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def ok(r) -> str:
    assert r.returncode == 0, f"{r.args}: {r.stderr}"
    return r.stdout


def submit(inst, user: str, *cmd: str, opts: tuple = ()) -> str:
    return ok(inst.flux(user, "submit", *opts, *cmd)).strip()


def py(inst, user: str, code: str, timeout: float = 60) -> dict:
    """Run Python `code` as `user` (a flux handle `h` on the instance); it sets `out`."""
    prog = ("import json, flux, errno\nh = flux.Flux()\nout = {}\n" + code
            + "\nprint(json.dumps(out))\n")
    return json.loads(ok(inst.run(user, sys.executable, "-c", prog, timeout=timeout)))


# ------------------------------------------------------------------ running
@pytest.mark.slow
def test_jobs_run_as_their_owners(inst):
    for user in ("alice", "bob", "flux"):
        out = ok(inst.flux(user, "run", "sh", "-c", "id -u; id -g; echo $HOME"))
        pw = pwd.getpwnam(user)
        assert out.split() == [str(pw.pw_uid), str(pw.pw_gid), pw.pw_dir]
    listing = ok(inst.flux("alice", "jobs", "-a", "-n", "-o", "{userid}"))
    assert set(listing.split()) == {str(uid("alice"))}  # without -A: only one's own


def test_everyone_sees_public_info_of_all_jobs(inst):
    a = submit(inst, "alice", "sleep", "300")
    b = submit(inst, "bob", "sleep", "300")
    try:
        seen = ok(inst.flux("bob", "jobs", "-A", "-n", "-o", "{id.f58} {username}"))
        assert f"{a} alice" in seen and f"{b} bob" in seen
    finally:
        ok(inst.flux("alice", "cancel", a))
        ok(inst.flux("bob", "cancel", b))


# ------------------------------------------------------------- reading data
def test_guest_reads_only_own_job_data(inst):
    a = submit(inst, "alice", "sh", "-c", "echo secret-of-alice")
    ok(inst.flux("alice", "job", "wait-event", "-t", "60", a, "clean"))
    dec = ok(inst.flux("alice", "job", "id", "--to=dec", a)).strip()
    kvsdir = ok(inst.flux("alice", "job", "id", "--to=kvs", a)).strip()
    # alice reads all of it
    assert "secret-of-alice" in ok(inst.flux("alice", "job", "attach", a))
    assert '"tasks"' in ok(inst.flux("alice", "job", "info", a, "jobspec"))
    assert "submit" in ok(inst.flux("alice", "job", "eventlog", a))
    # bob reads none of it
    for args in (("job", "attach", a), ("job", "info", a, "jobspec"), ("job", "info", a, "R"),
                 ("job", "eventlog", a), ("job", "eventlog", "-p", "guest.output", a),
                 ("kvs", "get", f"{kvsdir}.jobspec"), ("kvs", "get", f"{kvsdir}.J")):
        r = inst.flux("bob", *args)
        assert r.returncode != 0, args
        assert "secret-of-alice" not in r.stdout
        assert any(w in r.stderr for w in ("not your job", "belongs to another user", "denied",
                                           "Operation not permitted", "restricted to")), (args,
                                                                                         r.stderr)
    # nor the guest namespace of a running job of alice's
    a2 = submit(inst, "alice", "sleep", "300")
    try:
        ok(inst.flux("alice", "job", "wait-event", "-t", "60", a2, "start"))
        dec = ok(inst.flux("alice", "job", "id", "--to=dec", a2)).strip()
        r = inst.flux("bob", "kvs", "get", f"--namespace=job-{dec}", "exec.eventlog")
        assert r.returncode != 0 and "user" in r.stderr and str(uid("bob")) in r.stderr
        assert "init" in ok(inst.flux("alice", "kvs", "get", f"--namespace=job-{dec}",
                                      "exec.eventlog"))
    finally:
        ok(inst.flux("alice", "cancel", a2))


# ----------------------------------------------------------------- control
def test_guest_controls_only_own_jobs(inst):
    a = submit(inst, "alice", "sleep", "300")
    ok(inst.flux("alice", "job", "wait-event", "-t", "60", a, "start"))
    for args in (("cancel", a), ("job", "kill", a), ("job", "raise", a),
                 ("job", "urgency", a, "10")):
        r = inst.flux("bob", *args)
        assert r.returncode != 0, args
        assert "belongs to another user" in r.stderr or "not permitted" in r.stderr, r.stderr
    # urgency above 16 is for the owner only, also on one's own job
    r = inst.flux("alice", "job", "urgency", a, "20")
    assert r.returncode != 0 and "only the instance owner" in r.stderr
    r = inst.flux("alice", "submit", "--urgency=20", "true")
    assert r.returncode != 0 and "only the instance owner" in r.stderr
    # still running, untouched by bob
    state = ok(inst.flux("alice", "jobs", "-n", "-o", "{state}", a)).strip()
    assert state == "RUN"
    # alice signals her own job: the IMP delivers it to her shell
    ok(inst.flux("alice", "job", "kill", "--signal=SIGUSR1", a))
    ok(inst.flux("alice", "job", "wait-event", "-t", "60", a, "clean"))
    status = ok(inst.flux("alice", "jobs", "-n", "-o", "{returncode}", a)).strip()
    assert status == str(128 + 10)  # died of SIGUSR1
    # the owner controls everyone's jobs
    b = submit(inst, "bob", "sleep", "300", opts=("--urgency=0",))  # held
    ok(inst.flux("flux", "job", "urgency", b, "31"))
    ok(inst.flux("bob", "job", "wait-event", "-t", "60", b, "start"))
    ok(inst.flux("flux", "cancel", b))
    ok(inst.flux("bob", "job", "wait-event", "-t", "60", b, "clean"))
    assert ok(inst.flux("bob", "jobs", "-n", "-o", "{result}", b)).strip() == "CANCELED"


def test_user_cannot_reach_another_users_job_shell(inst):
    a = submit(inst, "alice", "cat")
    ok(inst.flux("alice", "job", "wait-event", "-t", "60", "-p", "exec", a, "shell.start"))
    svc = f"{uid('alice')}-shell-{ok(inst.flux('alice', 'job', 'id', '--to=f58plain', a)).strip()}"
    out = py(inst, "bob", f"""
try:
    h.rpc("{svc}.stdin", {{"stream": "stdin", "rank": "all", "data": "bob was here\\n"}}).get()
    out["bob"] = "accepted"
except OSError as e:
    out["bob"] = [e.errno, e.strerror]
""")
    assert out["bob"][0] == 1 and "belongs to another user" in out["bob"][1]
    py(inst, "alice", f"""
h.rpc("{svc}.stdin", {{"stream": "stdin", "rank": "all", "data": "alice was here\\n"}}).get()
h.rpc("{svc}.stdin", {{"stream": "stdin", "rank": "all", "eof": True}}).get()
""")
    out = ok(inst.flux("alice", "job", "attach", a))
    assert out == "alice was here\n"


# ----------------------------------------------------------- signatures
SIGN = """
import base64, os, pwd
from flux.core.security.sign import wrap_none
from flux.imp.sign import generate_keypair, load_private_key, sign
from cryptography.hazmat.primitives.serialization import load_pem_private_key
me = os.getuid()
key = load_private_key(os.path.expanduser("~/.flux/curve/sig"))
js = json.dumps({"version": 1, "resources": [{"type": "slot", "count": 1, "label": "task",
    "with": [{"type": "core", "count": 1}]}], "tasks": [{"command": ["true"], "slot": "task",
    "count": {"per_slot": 1}}], "attributes": {"system": {"duration": 0}}}).encode()
def try_submit(J):
    try:
        return ["ok", h.rpc("job-ingest.submit", {"J": J, "urgency": 16, "flags": 0}).get()["id"]]
    except OSError as e:
        return [e.errno, e.strerror]
"""


def test_ingest_refuses_forged_and_altered_requests(inst):
    out = py(inst, "alice", SIGN + """
out["good"] = try_submit(sign(js, me, key))
out["none"] = try_submit(wrap_none(js, me))
out["as_bob"] = try_submit(sign(js, pwd.getpwnam("bob").pw_uid, key))
h_, p_, s_ = sign(js, me, key).split(".")
evil = base64.b64encode(js.replace(b'"true"', b'"rm"')).decode()
out["altered"] = try_submit(f"{h_}.{evil}.{s_}")
other = load_pem_private_key(generate_keypair()[0], None)
out["other_key"] = try_submit(sign(js, me, other))
out["old"] = try_submit(sign(js, me, key, now=1000000))
out["garbage"] = try_submit("a.b.c")
""")
    assert out["good"][0] == "ok"
    assert out["none"][0] == 1 and "mechanism 'none' is not accepted" in out["none"][1]
    assert out["as_bob"][0] == 1 and "signed as uid" in out["as_bob"][1]
    assert out["altered"][0] == 1 and "does not verify" in out["altered"][1]
    assert out["other_key"][0] == 1 and "does not verify" in out["other_key"][1]
    assert out["old"][0] == 1 and "expired" in out["old"][1]
    assert out["garbage"][0] == 1
    # a user whose key is not registered
    user_keys("carol")
    r = inst.flux("carol", "submit", "true")
    assert r.returncode != 0 and "no signing key registered for user carol" in r.stderr
    ok(inst.flux("flux", "ping", "-c", "1", "broker"))  # still up


# ----------------------------------------------------------------- floods
def test_connection_flood_is_refused_per_user(inst):
    ensure_user("carol")  # a user with nothing else running: her count is exact
    out = py(inst, "carol", f"""
hs = []
try:
    for i in range({MAX_CONN} * 3):
        hs.append(flux.Flux())
except OSError as e:
    out["refused"] = [len(hs) + 1, e.errno, e.strerror]
for x in hs:
    x.close()
""")
    # carol's own `h` counts: she got MAX_CONN connections in all
    assert out["refused"][0] == MAX_CONN and out["refused"][1] == 11, out
    # other users, and carol once her connections closed, still get in
    ok(inst.flux("bob", "jobs"))
    ok(inst.flux("carol", "jobs"))
    assert "refused connection from uid" in ok(inst.flux("flux", "dmesg"))


def test_oversized_request_is_refused(inst):
    out = py(inst, "alice", """
try:
    h.rpc("job-ingest.submit", {"J": "x" * (2 << 20)}).get()
except OSError as e:
    out["big"] = [e.errno, e.strerror]
out["after"] = h.rpc("broker.ping", {"seq": 1}).get()["seq"]
""")
    assert out["big"][0] == 27 and "exceeds the broker's limit" in out["big"][1]
    assert out["after"] == 1


def test_guest_jobs_need_an_imp():
    s = SystemInstance(owner="flux", users=("alice",), with_imp=False)
    try:
        r = s.flux("alice", "run", "true")
        assert r.returncode != 0 and "need an IMP" in r.stderr, r.stderr
        assert ok(s.flux("flux", "run", "id", "-u")).strip() == str(uid("flux"))
    finally:
        s.stop()


@pytest.mark.slow
def test_guest_job_spans_two_brokers():
    # every rank's broker asks the IMP with the same J: one use per rank is no replay
    s = SystemInstance(owner="flux", users=("alice",), size=2)
    try:
        out = ok(s.flux("alice", "run", "-N2", "-n2", "--label-io", "id", "-u"))
        assert sorted(out.splitlines()) == [f"0: {uid('alice')}", f"1: {uid('alice')}"]
    finally:
        s.stop()


def test_guest_cannot_act_as_the_owner(inst):
    for args, why in ((("exec", "-r", "0", "id"), "restricted to the instance owner"),
                      (("resource", "drain", "0", "mine"), "restricted to the instance owner"),
                      (("queue", "stop"), "restricted to the instance owner"),
                      (("kvs", "put", "evil=1"), "restricted to the instance owner"),
                      (("shutdown",), "restricted to the instance owner")):
        r = inst.flux("alice", *args)
        assert r.returncode != 0 and why in r.stderr, (args, r.stderr)
    ok(inst.flux("flux", "ping", "-c", "1", "broker"))


def test_guest_tasks_use_the_instance_as_their_user(inst):
    # a task's own flux commands connect as alice and write her job's namespace
    out = ok(inst.flux("alice", "run", "sh", "-c",
                       "flux kvs put app.x=42 && flux kvs get app.x && flux kvs get --namespace="
                       "primary resource.R >/dev/null 2>&1 || echo no-primary"))
    assert out.split() == ["42", "no-primary"]


def test_guest_allocation_is_her_own_instance(inst):
    # the job's brokers run as alice: inside, she is the owner of her own instance
    out = ok(inst.flux("alice", "alloc", "-N1", "-n1", "sh", "-c",
                       "flux getattr security.owner; flux run id -u"))
    assert out.split() == [str(uid("alice"))] * 2
