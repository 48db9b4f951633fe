"""flux job subcommands, flux cancel, flux watch and flux pstree against a real instance."""

from __future__ import annotations

import json

import pytest

TEST_EXEC = "--setattr=system.exec.test.run_duration=0.01s"
LONG_EXEC = "--setattr=system.exec.test.run_duration=60s"


@pytest.fixture(scope="module")
def inst():
    import socket

    from conftest import Instance

    # 8 declared cores so that a few long-running jobs never wait for each other
    i = Instance(1, conf=[f'resource.config=[{{hosts="{socket.gethostname()}", cores="0-7"}}]'])
    yield i
    i.stop()


def submit(inst, *args: str) -> str:
    return inst.flux("submit", *args, check=True).stdout.strip()


# ------------------------------------------------------------ attach/status


def test_attach_reports_output_and_exit_code(inst):
    jobid = submit(inst, "sh", "-c", "echo from-job; exit 2")
    r = inst.flux("job", "attach", jobid)
    assert r.returncode == 2 and r.stdout == "from-job\n"
    assert "flux-job: task(s) exited with exit code 2" in r.stderr
    r = inst.flux("job", "attach", "-E", "-X", jobid)  # again, after the job ended
    assert r.stdout == "from-job\n" and "job.finish" in r.stderr and "exec.complete" in r.stderr


def test_attach_errors(inst):
    r = inst.flux("job", "attach", "ƒ2")
    assert r.returncode == 1 and "Failed to attach to ƒ2: No such job" in r.stderr
    r = inst.flux("job", "attach", "not-an-id!")
    assert r.returncode == 1 and "error parsing jobid" in r.stderr
    r = inst.flux("job", "attach", "--read-only", "--stdin-ranks=0", "ƒ2")
    assert r.returncode == 1 and "Do not use --stdin-ranks with --read-only" in r.stderr


def test_attach_wait_event_stops_reading_the_eventlog(inst):
    jobid = submit(inst, "sh", "-c", "echo out; exit 3")
    r = inst.flux("job", "attach", "-E", "-w", "start", jobid)
    # output is still copied, but the eventlog was left at `start`: no finish, no status
    assert r.returncode == 1 and r.stdout == "out\n"
    assert "job.start" in r.stderr and "job.finish" not in r.stderr


def test_status_exit_codes(inst):
    ok = submit(inst, TEST_EXEC, "true")
    bad = submit(inst, "sh", "-c", "exit 4")
    r = inst.flux("job", "status", "-v", ok, bad)
    assert r.returncode == 4
    assert f"{bad}: exited with exit code 4" in r.stderr
    held = submit(inst, "--urgency=hold", "true")
    inst.flux("cancel", held, check=True)
    assert inst.flux("job", "status", held).returncode == 1
    r = inst.flux("job", "status", "-e", "9", "-j", held)
    assert r.returncode == 9
    res = json.loads(r.stdout)
    assert res["exception_type"] == "cancel" and res["result"] == 4
    r = inst.flux("job", "status", "ƒ2")
    assert r.returncode == 1 and "ƒ2: No such job" in r.stderr


def test_wait_subcommand(inst):
    assert inst.flux("job", "wait").returncode == 2  # nothing waitable yet
    a = submit(inst, "--flags=waitable", TEST_EXEC, "true")
    r = inst.flux("job", "wait", a)
    assert r.returncode == 0 and r.stdout == ""
    b = submit(inst, "--flags=waitable", "sh", "-c", "exit 1")
    r = inst.flux("job", "wait")
    assert r.returncode == 1 and r.stdout.strip() == b
    assert "exit code 1" in r.stderr
    plain = submit(inst, TEST_EXEC, "true")
    r = inst.flux("job", "wait", plain)
    assert r.returncode == 2 and "waitable" in r.stderr
    ids = {submit(inst, "--flags=waitable", TEST_EXEC, "true") for _ in range(2)}
    r = inst.flux("job", "wait", "--all", "-v")
    assert r.returncode == 0
    assert {ln.split(":")[0] for ln in r.stderr.splitlines()} == ids


# ---------------------------------------------------------- info/eventlog


def test_info_keys(inst):
    jobid = submit(inst, TEST_EXEC, "--job-name=infojob", "true")
    inst.flux("job", "wait-event", jobid, "clean", check=True)
    spec = json.loads(inst.flux("job", "info", jobid, "jobspec", check=True).stdout)
    assert spec["attributes"]["system"]["job"]["name"] == "infojob"
    orig = json.loads(inst.flux("job", "info", "-o", jobid, "jobspec", check=True).stdout)
    assert orig["tasks"] == spec["tasks"]
    R = json.loads(inst.flux("job", "info", jobid, "R", check=True).stdout)
    assert R["version"] == 1
    log = inst.flux("job", "info", jobid, "eventlog", check=True).stdout
    assert json.loads(log.splitlines()[0])["name"] == "submit"
    r = inst.flux("job", "info", jobid, "nope")
    assert r.returncode == 1 and "not found" in r.stderr


def test_eventlog_formats(inst):
    jobid = submit(inst, TEST_EXEC, "true")
    inst.flux("job", "wait-event", jobid, "clean", check=True)
    text = inst.flux("job", "eventlog", jobid, check=True).stdout.splitlines()
    first = text[0].split()
    assert first[1] == "submit" and float(first[0]) > 0 and "urgency=16" in text[0]
    assert text[-1].split()[1] == "clean"
    js = inst.flux("job", "eventlog", "-f", "json", jobid, check=True).stdout.splitlines()
    assert [json.loads(x)["name"] for x in js] == [t.split()[1] for t in text]
    off = inst.flux("job", "eventlog", "-T", "offset", jobid, check=True).stdout.splitlines()
    assert off[0].startswith("0.000000 submit")
    iso = inst.flux("job", "eventlog", "-T", "iso", jobid, check=True).stdout.splitlines()
    assert "T" in iso[0].split()[0]
    ex = inst.flux("job", "eventlog", "-p", "exec", jobid)
    assert ex.returncode in (0, 1)
    follow = inst.flux("job", "eventlog", "-F", jobid, check=True).stdout.splitlines()
    assert follow[-1].split()[1] == "clean"


def test_eventlog_real_job_exec_and_output(inst):
    jobid = submit(inst, "echo", "hi")
    inst.flux("job", "wait-event", jobid, "clean", check=True)
    ex = inst.flux("job", "eventlog", "-p", "exec", jobid, check=True).stdout
    assert "shell.init" in ex and "complete" in ex
    out = inst.flux("job", "eventlog", "-p", "output", "-f", "json", jobid, check=True).stdout
    datas = [json.loads(x) for x in out.splitlines()]
    assert datas[0]["name"] == "header"
    assert any(e["name"] == "data" and e["context"].get("data") == "hi\n" for e in datas)


def test_wait_event_options(inst):
    jobid = submit(inst, LONG_EXEC, "true")
    r = inst.flux("job", "wait-event", "-t", "10", jobid, "start")
    assert r.returncode == 0 and r.stdout.split()[1] == "start"
    r = inst.flux("job", "wait-event", "-t", "0.2", jobid, "clean")
    assert r.returncode == 1 and "wait-event timeout on event 'clean'" in r.stderr
    inst.flux("cancel", jobid, check=True)
    r = inst.flux("job", "wait-event", "-m", "type=cancel", "-q", jobid, "exception")
    assert r.returncode == 0 and r.stdout == ""
    r = inst.flux("job", "wait-event", "-v", jobid, "clean")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[1] == "submit"
    r = inst.flux("job", "wait-event", jobid, "never-happens")
    assert r.returncode == 1 and "event 'never-happens' never received" in r.stderr


# ------------------------------------------------------- signals/exceptions


def test_kill_raise_and_cancel(inst):
    jobid = submit(inst, "sleep", "60")
    inst.flux("job", "wait-event", jobid, "start", check=True)
    r = inst.flux("job", "kill", "-s", "NOTASIG", jobid)
    assert r.returncode == 1 and "signal 'NOTASIG' is invalid" in r.stderr
    inst.flux("job", "raise", "-s", "5", "-t", "note", jobid, "--", "hello", "there", check=True)
    ev = inst.flux("job", "wait-event", "-f", "json", jobid, "exception", check=True).stdout
    ctx = json.loads(ev)["context"]
    assert (ctx["type"], ctx["severity"], ctx["note"]) == ("note", 5, "hello there")
    inst.flux("job", "kill", "-s", "USR1", jobid, check=True)
    r = inst.flux("job", "status", jobid)
    assert r.returncode == 128 + 10  # sleep dies of SIGUSR1


def test_cancel_messages(inst):
    r = inst.flux("cancel")
    assert r.returncode == 1 and "No target jobs were provided" in r.stderr
    r = inst.flux("cancel", "--all")
    assert "flux-cancel: Matched 0 jobs" in r.stderr
    assert inst.flux("cancel", "--all", "-q").stderr == ""
    ids = [submit(inst, "--urgency=hold", "true") for _ in range(2)]
    r = inst.flux("cancel", "-n", ids[0])
    assert "Would cancel 1 job" in r.stderr
    r = inst.flux("cancel", "--all", "-n")
    assert "Would cancel 2 jobs" in r.stderr
    r = inst.flux("cancel", "-S", "sched", "-m", "cleanup")
    assert r.returncode == 0 and "Canceled 2 jobs (0 errors)" in r.stderr
    for jobid in ids:
        assert inst.flux("job", "wait-event", "-m", "note=cleanup", jobid, "exception").returncode == 0
    r = inst.flux("cancel", ids[0])  # already inactive
    assert r.returncode == 1 and ids[0] in r.stderr
    r = inst.flux("cancel", "-S", "bogus")
    assert r.returncode == 1 and "Invalid state bogus specified" in r.stderr
    r = inst.flux("cancel", "--all", ids[0])
    assert r.returncode == 1 and "Do not specify a list of jobids" in r.stderr


def test_raiseall_and_killall(inst):
    jobid = submit(inst, "--urgency=hold", "true")
    r = inst.flux("job", "raiseall", "test")
    assert "Command matched 1 job" in r.stderr and "Use --force" in r.stderr
    r = inst.flux("job", "raiseall", "-s", "0", "-f", "test", "bye")
    assert "Raised exception on 1 job" in r.stderr
    assert inst.flux("job", "status", jobid).returncode == 1
    r = inst.flux("job", "killall", "-f")
    assert r.returncode == 0 and "matched 0 jobs" in r.stderr


def test_urgency(inst):
    jobid = submit(inst, "--urgency=hold", TEST_EXEC, "true")
    inst.flux("job", "wait-event", jobid, "priority", check=True)
    r = inst.flux("job", "urgency", "-v", jobid, "12")
    assert r.returncode == 0 and "old urgency: job held" in r.stderr
    r = inst.flux("job", "urgency", jobid, "soon")
    assert r.returncode == 1 and "invalid value" in r.stderr
    inst.flux("job", "wait-event", jobid, "clean", check=True)
    r = inst.flux("job", "urgency", jobid, "hold")
    assert r.returncode == 1 and jobid in r.stderr


# --------------------------------------------------------- id/last/purge


def test_id_conversions(inst):
    r = inst.flux("job", "id", "--to=dothex", "1234")
    assert r.stdout == "0000.0000.0000.04d2\n"
    r = inst.flux("job", "id", "--to=f58plain", "0000.0000.0000.04d2")
    assert r.stdout == "fNH\n"
    r = inst.flux("job", "id", "--to=kvs", input="ƒNH\n1234\n")
    assert r.stdout.splitlines() == ["job.0000.0000.0000.04d2"] * 2
    for enc in ("dec", "hex", "words", "emoji", "f58"):
        out = inst.flux("job", "id", f"--to={enc}", "1234", check=True).stdout.strip()
        assert inst.flux("job", "id", out, check=True).stdout.strip() == "1234"
    r = inst.flux("job", "id", "--to=nope", "1")
    assert r.returncode == 1 and "Unknown to=ENCODING" in r.stderr
    r = inst.flux("job", "id", "junk!")
    assert r.returncode == 1 and "junk!: malformed input" in r.stderr


def test_last_and_purge(make_instance):
    inst = make_instance(1)
    assert "job history is empty" in inst.flux("job", "last").stderr
    ids = [submit(inst, TEST_EXEC, "true") for _ in range(3)]
    assert inst.flux("job", "last").stdout.split() == [ids[-1]]
    assert inst.flux("job", "last", "2").stdout.split() == ids[::-1][:2]
    assert inst.flux("job", "last", "[1:3]").stdout.split() == ids[::-1][1:3]
    for jobid in ids:
        inst.flux("job", "wait-event", jobid, "clean", check=True)
    r = inst.flux("job", "purge", "--num-limit=1")
    assert r.stdout.strip() == "use --force to purge 2 of 3 inactive jobs"
    r = inst.flux("job", "purge", "--num-limit=1", "-f")
    assert r.stdout.strip() == "purged 2 inactive jobs, 1 remaining"
    assert inst.flux("job", "info", ids[0], "eventlog").returncode == 1
    r = inst.flux("job", "purge", "-f", ids[2])
    assert r.stdout.strip() == "purged 1 inactive jobs, 0 remaining"


def test_taskmap(inst):
    r = inst.flux("job", "taskmap", "--to=raw", '[[0,2,2,1]]')
    assert r.stdout.strip() == "0-1;2-3"
    r = inst.flux("job", "taskmap", "--to=pmi", '[[0,2,2,1]]')
    assert r.stdout.strip() == "(vector,(0,2,2))"
    assert inst.flux("job", "taskmap", "--nodeid=3", '[[0,2,2,1]]').stdout.strip() == "1"
    assert inst.flux("job", "taskmap", "--ntasks=0", '[[0,2,2,1]]').stdout.strip() == "2"
    assert inst.flux("job", "taskmap", "--taskids=1", '[[0,2,2,1]]').stdout.strip() == "2-3"
    jobid = submit(inst, "-n2", "true")
    inst.flux("job", "wait-event", jobid, "clean", check=True)
    assert json.loads(inst.flux("job", "taskmap", jobid, check=True).stdout) == [[0, 1, 2, 1]]
    host = inst.flux("job", "taskmap", "--hostname=1", jobid, check=True).stdout.strip()
    assert host
    r = inst.flux("job", "taskmap", "--taskids=5", '[[0,2,2,1]]')
    assert r.returncode == 1


def test_job_usage(inst):
    r = inst.flux("job")
    assert r.returncode == 1 and "attach" in r.stderr
    r = inst.flux("job", "frobnicate")
    assert r.returncode == 1 and "unknown subcommand 'frobnicate'" in r.stderr


# ------------------------------------------------------------ watch/pstree


def test_watch_copies_output_and_exit_code(inst):
    a = submit(inst, "sh", "-c", "echo A")
    b = submit(inst, "sh", "-c", "echo B; exit 3")
    r = inst.flux("watch", a, b)
    assert r.returncode == 3
    assert sorted(r.stdout.split()) == ["A", "B"]
    r = inst.flux("watch", "--active")
    assert r.returncode == 0  # nothing active: says so
    r = inst.flux("watch")
    assert r.returncode == 1 and "specify job ids" in r.stderr


def test_pstree(inst):
    ids = [submit(inst, LONG_EXEC, "--job-name=sleeper", "true") for _ in range(2)]
    other = submit(inst, LONG_EXEC, "--job-name=solo", "true")
    for jobid in (*ids, other):
        inst.flux("job", "wait-event", jobid, "start", check=True)
    r = inst.flux("pstree", "--ascii")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "."
    assert "2*[sleeper]" in r.stdout and "solo" in r.stdout
    r = inst.flux("pstree", "-x")
    assert r.stdout.splitlines()[0].split() == ["JOBID", "USER", "ST", "NTASKS", "NNODES", "RUNTIME"]
    assert sum(1 for ln in r.stdout.splitlines() if "sleeper" in ln) == 2
    inst.flux("cancel", *ids, other, check=True)
    for jobid in (*ids, other):
        inst.flux("job", "wait-event", jobid, "clean", check=True)
    r = inst.flux("pstree", "-a")
    assert "sleeper:CA" in r.stdout
