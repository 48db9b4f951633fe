"""The accounting plugin (plugins/jobtap-accounting): the database and `flux account`,
the `accounting.*` RPCs, association checks and limits at submit, usage and the
multi-factor priority, on real instances."""

from __future__ import annotations

import json
import os
import pwd
import socket

import pytest
from flux_accounting import policy
from flux_accounting.db import AccountingError, Store

HOST = socket.gethostname()
ME = pwd.getpwuid(os.getuid()).pw_name
GUEST = 65534


def one_core(n: int = 1) -> str:
    return f'resource.config=[{{hosts="{HOST}", cores="0-{n - 1}"}}]'


def acct_conf(tmp_path, *extra: str) -> list[str]:
    return [f'accounting.db="{tmp_path / "acct.db"}"', *extra]


def account(inst, *args: str, check: bool = True):
    return inst.flux("account", *args, check=check)


def setup_banks(inst, *users: tuple[str, ...]) -> None:
    account(inst, "add-bank", "root", "1")
    account(inst, "add-bank", "--parent-bank=root", "A", "1")
    for u in users:
        account(inst, "add-user", "--bank=A", *u)


def events(inst, jobid: str) -> list[tuple[str, dict, float]]:
    r = inst.flux("job", "eventlog", "-f", "json", jobid, check=True)
    return [(e["name"], e.get("context", {}), e["timestamp"])
            for e in map(json.loads, r.stdout.splitlines())]


def view(inst, user: str) -> dict:
    return json.loads(account(inst, "view-user", "--json", user).stdout)


# ------------------------------------------------------------------ policy (pure)

def test_fairshare_decay_and_priority_formula():
    assert policy.decayed(100.0, 0.0, 3600.0, 3600.0) == pytest.approx(50.0)
    assert policy.decayed(100.0, 0.0, 7200.0, 3600.0) == pytest.approx(25.0)
    # no usage -> 1; usage matching shares -> 0.5; over-use -> lower
    assert policy.fairshare(0.0, 10.0, 0.5) == 1.0
    assert policy.fairshare(5.0, 10.0, 0.5) == pytest.approx(0.5)
    assert policy.fairshare(10.0, 10.0, 0.5) == pytest.approx(0.25)
    banks = [{"bank": "root", "parent_bank": None, "shares": 1, "active": 1},
             {"bank": "A", "parent_bank": "root", "shares": 3, "active": 1},
             {"bank": "B", "parent_bank": "root", "shares": 1, "active": 1}]
    assert policy.bank_shares(banks) == {"root": 1.0, "A": 0.75, "B": 0.25}
    conf = policy.Config(db="x", max_age=100.0)
    base = dict(fshare=0.5, queue=None, bank_priority=0.0, age=0.0)
    assert policy.priority(conf, urgency=16, **base) == 50000
    assert policy.priority(conf, urgency=17, **base) == 51000
    assert policy.priority(conf, urgency=16, **dict(base, age=50.0)) == 50500
    assert policy.priority(conf, urgency=16, **dict(base, age=1e9)) == 51000  # age saturates
    assert policy.priority(conf, urgency=0, **base) == 0  # hold
    assert policy.priority(conf, urgency=31, **base) == policy.PRIORITY_MAX  # expedite
    assert policy.priority(conf, urgency=1, **dict(base, fshare=0.0)) == 1  # never 0 (held)
    conf = policy.Config(db="x", queue_priority={"debug": 2})
    assert policy.priority(conf, urgency=16, **dict(base, queue="debug")) == 70000


def test_config_errors_name_the_key():
    assert policy.parse_config({}) is None
    for bad, text in [({}, "accounting.db"), ({"db": "x", "half-life": "soon"}, "accounting.half-life"),
                      ({"db": "x", "weights": {"fairshare": -1}}, "accounting.weights.fairshare"),
                      ({"db": "x", "weights": {"luck": 1}}, "accounting.weights.luck: unknown"),
                      ({"db": "x", "halflife": "1d"}, "unknown key(s) halflife")]:
        with pytest.raises(policy.ConfigError) as ei:
            policy.parse_config({"accounting": bad})
        assert text in str(ei.value)


def test_store_refuses_bad_changes_and_stores_nothing(tmp_path):
    s = Store(str(tmp_path / "a.db"))
    s.add_bank("root", 1)
    with pytest.raises(AccountingError, match="a root bank already exists"):
        s.add_bank("other", 1)
    with pytest.raises(AccountingError, match="parent bank nope does not exist"):
        s.add_bank("A", 1, parent="nope")
    s.add_bank("A", 1, parent="root")
    with pytest.raises(AccountingError, match="bank B does not exist"):
        s.add_user("alice", "B", userid=5000)
    with pytest.raises(AccountingError, match="bank root has sub-banks"):
        s.add_user("alice", "root", userid=5000)
    with pytest.raises(AccountingError, match="shares must be an integer >= 0"):
        s.add_user("alice", "A", userid=5000, shares=-2)
    with pytest.raises(AccountingError, match="user no-such-user-x is unknown"):
        s.add_user("no-such-user-x", "A")
    assert s.associations() == []
    s.add_user("alice", "A", userid=5000)
    with pytest.raises(AccountingError, match="already in bank A"):
        s.add_user("alice", "A", userid=5000)
    with pytest.raises(AccountingError, match="cannot edit job_usage"):
        s.edit_user("alice", None, {"job_usage": 0})
    assert [a["username"] for a in s.associations()] == ["alice"]


# ------------------------------------------------------------ CLI and RPCs

def test_flux_account_commands(make_instance, tmp_path):
    inst = make_instance(1, conf=acct_conf(tmp_path))
    account(inst, "add-bank", "root", "1")
    account(inst, "add-bank", "--parent-bank=root", "--priority=2", "A", "3")
    account(inst, "add-bank", "--parent-bank=root", "B", "1")
    account(inst, "add-user", f"--username={ME}", "--bank=A", "--max-running-jobs=2")
    account(inst, "add-user", f"--username={ME}", "--bank=B", "--shares=4")
    v = view(inst, ME)
    assert v["userid"] == os.getuid()
    a = {x["bank"]: x for x in v["associations"]}
    assert set(a) == {"A", "B"} and a["A"]["default_bank"] == "A" == a["B"]["default_bank"]
    assert (a["A"]["max_running_jobs"], a["A"]["max_active_jobs"]) == (2, 7)
    assert a["A"]["norm_shares"] == pytest.approx(0.75) and a["B"]["norm_shares"] == pytest.approx(0.25)
    assert a["A"]["fairshare"] == 1.0 and a["A"]["active_jobs"] == 0
    text = account(inst, "view-user", ME).stdout.splitlines()
    assert text[0].split()[:4] == ["USERNAME", "USERID", "BANK", "DEFAULT_BANK"]
    assert len(text) == 3
    banks = json.loads(account(inst, "list-banks", "--json").stdout)
    assert [(b["bank"], b["parent_bank"], b["shares"], b["priority"]) for b in banks] == [
        ("A", "root", 3, 2.0), ("B", "root", 1, 0.0), ("root", "", 1, 0.0)]
    users = json.loads(account(inst, "list-users", "--json").stdout)
    assert [(u["username"], u["bank"]) for u in users] == [(ME, "A"), (ME, "B")]
    account(inst, "edit-user", ME, "--bank=B", "--max-active-jobs=1", "--default-bank=B")
    a = {x["bank"]: x for x in view(inst, ME)["associations"]}
    assert a["B"]["max_active_jobs"] == 1 and a["A"]["max_active_jobs"] == 7
    assert a["A"]["default_bank"] == "B"
    account(inst, "delete-user", ME, "B")
    assert [x["bank"] for x in view(inst, ME)["associations"]] == ["A"]
    # errors are clear and change nothing
    for args, text in [(("view-user", "nobody-here"), "user nobody-here is not in the accounting database"),
                       (("add-user", f"--username={ME}", "--bank=Z"), "bank Z does not exist"),
                       (("add-user", f"--username={ME}", "--bank=A"), f"user {ME} is already in bank A"),
                       (("add-bank", "A", "1", "--parent-bank=root"), "bank A already exists"),
                       (("delete-user", ME, "Z"), f"user {ME} is not in bank Z"),
                       (("edit-user", ME), "nothing to change"),
                       (("edit-user", ME, "--shares=-1"), "shares must be an integer >= 0")]:
        r = account(inst, *args, check=False)
        assert r.returncode != 0 and text in r.stderr, (args, r.stderr)
    assert [x["bank"] for x in view(inst, ME)["associations"]] == ["A"]


def test_rpcs_and_their_errors(make_instance, tmp_path):
    inst = make_instance(1, conf=acct_conf(tmp_path))
    setup_banks(inst, (f"--username={ME}",))
    h = inst.handle()
    r = h.rpc("accounting.view_user", {"username": ME}).get()
    assert r["username"] == ME and r["associations"][0]["bank"] == "A"
    banks = h.rpc("accounting.list_banks", {}).get()["banks"]
    assert {b["bank"] for b in banks} == {"root", "A"}
    for topic, payload, text in [
            ("accounting.view_user", {}, "a username is required"),
            ("accounting.view_user", {"username": 7}, "a username is required"),
            ("accounting.add_bank", {"bank": "B", "shares": "many", "parent_bank": "root"},
             "shares must be an integer"),
            ("accounting.add_bank", {"bank": "B c", "shares": 1, "parent_bank": "root"},
             "bank must be a non-empty name without spaces"),
            ("accounting.edit_user", {"username": ME, "changes": []}, "field 'changes'")]:
        with pytest.raises(OSError) as ei:
            h.rpc(topic, payload).get()
        assert text in ei.value.strerror, (topic, ei.value.strerror)
    # the broker is still up and unchanged
    assert {b["bank"] for b in h.rpc("accounting.list_banks", {}).get()["banks"]} == {"root", "A"}


def test_prepared_database_with_path(make_instance, tmp_path):
    import subprocess

    from conftest import FLUX

    db = str(tmp_path / "acct.db")
    for args in (["create-db"], ["add-bank", "root", "1"], ["add-bank", "--parent-bank=root", "A", "1"],
                 ["add-user", f"--username={ME}", "--bank=A"]):
        r = subprocess.run([FLUX, "account", "-p", db, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    r = subprocess.run([FLUX, "account", "-p", str(tmp_path / "none.db"), "list-banks"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "does not exist (create it with `flux account create-db`)" in r.stderr
    inst = make_instance(1, conf=[f'accounting.db="{db}"'])
    assert inst.flux("run", "true").returncode == 0


def test_unconfigured_instance_answers_enosys(instance):
    r = account(instance, "list-banks", check=False)
    assert r.returncode != 0
    assert "accounting is not configured on this instance (no [accounting] table)" in r.stderr


def test_bad_config_refuses_jobs_naming_the_key(make_instance, tmp_path):
    inst = make_instance(1, conf=acct_conf(tmp_path, "accounting.weights.fairshare=-5"))
    r = inst.flux("submit", "true")
    assert r.returncode != 0 and "accounting.weights.fairshare" in r.stderr


# ------------------------------------------------------------- jobs

def test_user_without_association_is_refused(make_instance, tmp_path):
    inst = make_instance(1, conf=acct_conf(tmp_path))
    setup_banks(inst)
    r = inst.flux("submit", "true")
    assert r.returncode != 0
    assert f"user {ME} (uid {os.getuid()}) has no accounting association" in r.stderr
    account(inst, "add-user", f"--username={ME}", "--bank=A")
    r = inst.flux("submit", "--setattr=system.bank=B", "true")
    assert r.returncode != 0 and f"user {ME} is not a member of bank B (banks: A)" in r.stderr
    assert inst.flux("run", "--setattr=system.bank=A", "true").returncode == 0


def test_limits_max_active_refused_max_running_held(make_instance, tmp_path):
    inst = make_instance(1, conf=acct_conf(tmp_path) + [one_core(4)])
    setup_banks(inst, (f"--username={ME}", "--max-running-jobs=1", "--max-active-jobs=2"))
    first = inst.flux("submit", "sleep", "30", check=True).stdout.strip()
    second = inst.flux("submit", "true", check=True).stdout.strip()
    r = inst.flux("submit", "true")
    assert r.returncode != 0
    assert (f"user has max active jobs: {ME} already has 2 active job(s) in bank A"
            " (max_active_jobs=2)") in r.stderr
    # the second job waits in DEPEND although 3 cores are free
    inst.flux("job", "wait-event", "-q", "-t", "30", first, "start", check=True)
    names = [e[0] for e in events(inst, second)]
    assert names[-1] == "dependency-add" and "alloc" not in names
    assert inst.flux("jobs", "-n", "-o", "{status}", second).stdout.strip() == "DEPEND"
    live = view(inst, ME)["associations"][0]
    assert (live["active_jobs"], live["running_jobs"], live["held_jobs"]) == (2, 1, 1)
    inst.flux("cancel", first, check=True)
    inst.flux("job", "wait-event", "-q", "-t", "30", second, "clean", check=True)
    ev = events(inst, second)
    assert [(n, c) for n, c, _ in ev if n.startswith("dependency")] == [
        ("dependency-add", {"description": "max-running-jobs-user-limit"}),
        ("dependency-remove", {"description": "max-running-jobs-user-limit"})]
    t_first_clean = [t for n, _, t in events(inst, first) if n == "clean"][0]
    t_second_alloc = [t for n, _, t in ev if n == "alloc"][0]
    assert t_second_alloc >= t_first_clean
    # raising the limit releases held jobs at once
    account(inst, "edit-user", ME, "--max-running-jobs=3", "--max-active-jobs=0")
    ids = [inst.flux("submit", "sleep", "30", check=True).stdout.strip() for _ in range(3)]
    for j in ids:
        inst.flux("job", "wait-event", "-q", "-t", "30", j, "start", check=True)
    inst.flux("cancel", *ids, check=True)


def test_usage_is_core_seconds_of_finished_jobs(make_instance, tmp_path):
    inst = make_instance(1, conf=acct_conf(tmp_path) + [one_core(2)])
    setup_banks(inst, (f"--username={ME}",))
    jobid = inst.flux("submit", "-n2", "sleep", "0.3", check=True).stdout.strip()
    inst.flux("job", "wait-event", "-q", "-t", "30", jobid, "clean", check=True)
    ev = {n: t for n, _, t in events(inst, jobid)}
    expect = 2 * (ev["finish"] - ev["alloc"])
    a = view(inst, ME)["associations"][0]
    assert a["job_usage"] == pytest.approx(expect, abs=0.01)
    assert expect > 0.6
    assert a["fairshare"] == pytest.approx(0.5)  # the only user used everything: U/S = 1
    banks = {b["bank"]: b for b in json.loads(account(inst, "list-banks", "--json").stdout)}
    assert banks["A"]["job_usage"] == banks["root"]["job_usage"] == a["job_usage"]
    # the job record is in the database; update-usage rebuilds the same decayed usage
    s = Store(str(tmp_path / "acct.db"))
    recs = s.job_records()
    assert len(recs) == 1 and recs[0]["ncores"] == 2 and recs[0]["username"] == ME
    account(inst, "update-usage")
    assert view(inst, ME)["associations"][0]["job_usage"] == pytest.approx(expect, abs=0.01)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to submit as a second (guest) user")
def test_heavy_users_new_jobs_fall_behind_a_light_users(make_instance, tmp_path):
    """The owner (heavy: has run jobs) and `nobody` (light: no usage) have equal shares in
    bank A. While the queue is stopped, the heavy user submits first and the light user
    second; the light user's job gets the higher priority and is allocated first."""
    from flux.job import JobspecV1
    from guest import guest_submit

    light = pwd.getpwuid(GUEST).pw_name
    inst = make_instance(1, conf=acct_conf(tmp_path, "accounting.weights.age=0")
                         + [one_core(1), "access.allow-guest-user=true"])
    os.chmod(inst.rundir, 0o755)  # let the guest reach the socket
    setup_banks(inst, (f"--username={ME}",), (f"--username={light}", f"--userid={GUEST}"))
    for _ in range(2):
        assert inst.flux("run", "sleep", "0.2").returncode == 0
    usage = {u: view(inst, u)["associations"][0] for u in (ME, light)}
    assert usage[ME]["job_usage"] > 0.3 and usage[light]["job_usage"] == 0
    assert usage[ME]["fairshare"] < usage[light]["fairshare"] == 1.0

    inst.flux("queue", "stop", check=True)
    heavy_job = inst.flux("submit", "true", check=True).stdout.strip()
    heavy_job = inst.flux("job", "id", heavy_job, check=True).stdout.strip()  # decimal
    js = JobspecV1.from_command(["true"])
    res = guest_submit(inst.uri, GUEST, js)
    assert res[0] == "ok", res
    light_job = str(res[1]["id"])
    for j in (heavy_job, light_job):
        inst.flux("job", "wait-event", "-q", "-t", "30", j, "priority", check=True)
    rows = [line.split() for line in inst.flux(
        "jobs", "-A", "-n", "-o", "{id.dec} {userid} {priority}", check=True).stdout.splitlines()]
    # listed (and to be scheduled) by priority: the light user first, although submitted last
    assert [(r[0], int(r[1])) for r in rows] == [(light_job, GUEST), (heavy_job, os.getuid())]
    prio = {r[0]: int(r[2]) for r in rows}
    assert prio[light_job] == 100000  # fair share 1.0 x weight 100000
    assert prio[heavy_job] == round(100000 * usage[ME]["fairshare"]) < prio[light_job]

    inst.flux("queue", "start", check=True)
    inst.flux("job", "wait-event", "-q", "-t", "60", heavy_job, "clean", check=True)
    t_alloc = {j: [t for n, _, t in events(inst, j) if n == "alloc"][0]
               for j in (heavy_job, light_job)}
    assert t_alloc[light_job] < t_alloc[heavy_job]
