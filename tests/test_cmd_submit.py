"""flux submit / run / bulksubmit: option handling (in-process) and real submissions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

TEST_EXEC = "--setattr=system.exec.test.run_duration=0.01s"


def _spec(*argv: str, prog: str = "submit") -> dict:
    """The jobspec `flux <prog> --dry-run ARGV` would print, built in-process."""
    from flux.cmd import jobopts, submit

    parser = {"submit": submit.submit_parser, "run": submit.run_parser}[prog]()
    args = jobopts.parse_posix(parser, list(argv))
    return jobopts.jobspec_create(args).jobspec


def _system(js: dict) -> dict:
    return js["attributes"]["system"]


# ------------------------------------------------------------- resources


def test_worked_example_matches_spec():
    js = _spec("-N2", "-n4", "-c2", "-t", "10", "app")
    assert js["resources"] == [{"type": "node", "count": 2, "with": [
        {"type": "slot", "count": 2, "label": "task", "with": [{"type": "core", "count": 2}]}]}]
    assert js["tasks"] == [{"command": ["app"], "slot": "task", "count": {"per_slot": 1}}]
    sysattr = _system(js)
    assert sysattr["duration"] == 600.0
    assert sysattr["cwd"] == os.getcwd()
    assert sysattr["environment"]["PATH"] == os.environ["PATH"]
    assert "rlimit" in sysattr["shell"]["options"]


def test_per_task_shapes():
    js = _spec("-n3", "-c2", "-g1", "hostname")
    assert js["resources"] == [{"type": "slot", "count": 3, "label": "task", "with": [
        {"type": "core", "count": 2}, {"type": "gpu", "count": 1}]}]
    js = _spec("-N2", "-n3", "hostname")  # uneven: total count
    assert js["tasks"][0]["count"] == {"total": 3}
    assert js["resources"][0]["with"][0]["count"] == 2
    js = _spec("-N2", "hostname")  # -N alone: one task per node, exclusive
    assert js["resources"][0]["exclusive"] is True and js["resources"][0]["count"] == 2
    assert js["tasks"][0]["count"] == {"per_slot": 1}


def test_per_resource_shapes():
    js = _spec("--cores=4", "hostname")
    assert js["resources"] == [{"type": "slot", "count": 4, "label": "task",
                                "with": [{"type": "core", "count": 1}]}]
    js = _spec("-N2", "--cores=8", "--tasks-per-node=3", "hostname")
    node = js["resources"][0]
    assert node["type"] == "node" and node["count"] == 2
    assert node["with"][0]["with"] == [{"type": "core", "count": 4}]
    assert _system(js)["shell"]["options"]["per-resource"] == {"type": "node", "count": 3}
    js = _spec("-N1", "--tasks-per-core=2", "--gpus-per-node=2", "hostname")
    assert js["resources"][0]["exclusive"] is True
    assert {"type": "gpu", "count": 2} in js["resources"][0]["with"][0]["with"]
    assert _system(js)["shell"]["options"]["per-resource"] == {"type": "core", "count": 2}


@pytest.mark.parametrize("argv,message", [
    (["-N3", "-n2", "x"], "node count must not be greater than task count"),
    (["-x", "x"], "exclusive can only be set with a node count"),
    (["-n2", "--cores=2", "x"], "Per-resource options can't be used with per-task"),
    (["--tasks-per-node=1", "--tasks-per-core=1", "-N1", "x"], "Do not specify both"),
    (["--gpus-per-node=1", "x"], "--gpus-per-node requires --nodes"),
    (["-n", "two", "x"], "--ntasks: invalid int value 'two'"),
    (["-N2", "--cores=3", "x"], "evenly divisible"),
    ([], "job command and arguments are missing"),
    (["-t", "forever", "x"], "--time-limit=forever"),
    (["--signal=NOPE@1m", "x"], "signal 'NOPE' is invalid"),
    (["--requires=(a|b", "x"], "Unclosed parenthesis"),
    (["--env=X=$NOT_DEFINED_ANYWHERE", "x"], "Variable 'NOT_DEFINED_ANYWHERE' not found"),
])
def test_bad_resource_requests_are_named(argv, message):
    with pytest.raises(ValueError) as ei:
        _spec(*argv)
    assert message in str(ei.value)


# --------------------------------------------------------------- options


def test_posix_parsing_stops_at_first_non_option():
    js = _spec("-n2", "hostname", "-l", "--help")
    assert js["tasks"][0]["command"] == ["hostname", "-l", "--help"]
    js = _spec("--", "-weird-program", "-n2")
    assert js["tasks"][0]["command"] == ["-weird-program", "-n2"]


def test_time_limits_minutes_and_fsd():
    assert _system(_spec("-t", "1.5", "x"))["duration"] == 90.0
    assert _system(_spec("-t", "30s", "x"))["duration"] == 30.0
    assert _system(_spec("--time-limit=2h", "x"))["duration"] == 7200.0


def test_setattr_setopt_value_rules(tmp_path):
    f = tmp_path / "v.json"
    f.write_text('{"a": [1, 2]}')
    js = _spec("-S", "foo=bar", "-S", "user.n=42", "--setattr=.system.flag", f"-S^blob={f}",
               "-o", "verbose=2", "-o", "cpu-affinity=off", "-o", "nested.key.deep=[1]",
               "--setopt=bare", "x")
    sysattr = _system(js)
    assert sysattr["foo"] == "bar" and sysattr["flag"] == 1 and sysattr["blob"] == {"a": [1, 2]}
    assert js["attributes"]["user"]["n"] == 42
    opts = sysattr["shell"]["options"]
    assert opts["verbose"] == 2 and opts["cpu-affinity"] == "off" and opts["bare"] == 1
    assert opts["nested"]["key"]["deep"] == [1]


def test_environment_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEP_ME", "1")
    monkeypatch.setenv("DROP_ME_A", "1")
    monkeypatch.setenv("DROP_ME_B", "1")
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nFROM_FILE=yes\n-KEEP_ME\n")
    env = _system(_spec("--env-remove=DROP_ME_*", "--env=NEW=$HOME/x", "--env=NEW=${NEW}y",
                        f"--env-file={envfile}", "--env=TPL={{tmpdir}}/a", "x"))
    assert "DROP_ME_A" not in env["environment"] and "DROP_ME_B" not in env["environment"]
    assert env["environment"]["NEW"] == os.environ["HOME"] + "/xy"
    assert env["environment"]["FROM_FILE"] == "yes" and "KEEP_ME" not in env["environment"]
    assert "TPL" not in env["environment"]
    assert env["shell"]["options"]["env-expand"] == {"TPL": "{{tmpdir}}/a"}
    only = _system(_spec("--env=-*", "--env=KEEP_ME", "--env=/^DROP_ME_A$/", "x"))["environment"]
    assert only == {"KEEP_ME": "1", "DROP_ME_A": "1"}


def test_dependencies_begin_time_requires_signal_taskmap():
    import time

    js = _spec("--dependency=afterok:ƒ123", "--dependency=singleton",
               "--dependency=foo:bar?x=1&y=2.5&z=str", "--begin-time=+1h",
               "--requires=a,b host:node[1-2] -c", "--signal=USR2@2m",
               "--taskmap=cyclic:2", "x")
    sysattr = _system(js)
    deps = sysattr["dependencies"]
    assert deps[0] == {"scheme": "afterok", "value": "ƒ123"}
    assert deps[1] == {"scheme": "singleton", "value": ""}
    assert deps[2] == {"scheme": "foo", "value": "bar", "x": 1, "y": 2.5, "z": "str"}
    assert deps[3]["scheme"] == "begin-time"
    assert abs(float(deps[3]["value"]) - (time.time() + 3600)) < 60
    assert sysattr["constraints"] == {"and": [{"properties": ["a", "b"]},
                                              {"hostlist": ["node[1-2]"]},
                                              {"not": [{"properties": ["c"]}]}]}
    opts = sysattr["shell"]["options"]
    assert opts["signal"] == {"signum": 12, "timeleft": 120.0}
    assert opts["taskmap"] == {"scheme": "cyclic", "value": "2"}
    assert _system(_spec("--signal", "@30", "x"))["shell"]["options"]["signal"] == \
        {"signum": 10, "timeleft": 30.0}


def test_constraint_parser_rfc35():
    from flux.cmd.jobopts import ConstraintSyntaxError, SubmitConstraintParser

    p = SubmitConstraintParser()
    assert p.parse("a|b&c") == {"or": [{"properties": ["a"]}, {"properties": ["b", "c"]}]}
    assert p.parse("not (a or rank:0-3)") == {"not": [{"or": [{"properties": ["a"]},
                                                              {"ranks": ["0-3"]}]}]}
    assert p.parse("hosts:'foo bar'") == {"hostlist": ["foo bar"]}
    assert p.parse('a && b') == {"properties": ["a", "b"]}
    for bad in ("-(a)", "a|", "'open", "x:", "bad$op:1"):
        with pytest.raises(ConstraintSyntaxError):
            p.parse(bad)


def test_io_names_queue_bank_files(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("hello\n")
    js = _spec("--output=out.{{id}}", "--error=err.txt", "--input=in.txt", "-l", "-u",
               "--cwd=/tmp", "-q", "batch", "-B", "acct", "--job-name=myjob",
               f"--add-file={data}", "--add-file=inline=line1\nline2\n", "x")
    sysattr = _system(js)
    out = sysattr["shell"]["options"]["output"]
    assert out["stdout"] == {"type": "file", "path": "out.{{id}}", "label": True,
                             "buffer": {"type": "none"}}
    assert out["stderr"]["path"] == "err.txt" and out["batch-timeout"] == 0.05
    assert sysattr["shell"]["options"]["input"]["stdin"] == {"type": "file", "path": "in.txt"}
    assert sysattr["cwd"] == "/tmp" and sysattr["queue"] == "batch" and sysattr["bank"] == "acct"
    assert sysattr["job"]["name"] == "myjob"
    assert sysattr["files"]["data.txt"]["data"] == "hello\n"
    assert sysattr["files"]["inline"]["data"] == "line1\nline2\n"
    # --input=IDSET is stdin routing for `flux run`, not a file
    assert "input" not in _system(_spec("--input=0", "x")).get("shell", {}).get("options", {})
    # kvs/none output keeps the default
    assert "output" not in _system(_spec("--output=kvs", "x"))["shell"]["options"]


def test_urgency_and_flags_parsing():
    from flux.cmd.jobopts import parse_flags, parse_urgency

    assert [parse_urgency(x) for x in ("hold", "default", "expedite", "7")] == [0, 16, 31, 7]
    for bad in ("32", "-1", "soon"):
        with pytest.raises(ValueError, match="--urgency"):
            parse_urgency(bad)
    assert parse_flags(["debug,waitable", "novalidate"]) == {
        "debug": True, "waitable": True, "novalidate": True}
    with pytest.raises(ValueError, match="Unknown flag bogus"):
        parse_flags(["bogus"])


def test_parse_datetime_forms():
    import datetime
    import time

    from flux.cmd.jobopts import parse_datetime

    now = time.time()
    assert abs(parse_datetime("+30s") - (now + 30)) < 5
    assert parse_datetime("2030-01-02T03:04:05") == datetime.datetime(2030, 1, 2, 3, 4, 5).timestamp()
    t = parse_datetime("3pm")
    assert datetime.datetime.fromtimestamp(t).hour == 15 and t > now
    with pytest.raises(ValueError, match="could not parse"):
        parse_datetime("someday")


# ------------------------------------------------------------ bulksubmit


def _bulk(*argv: str, stdin: str = "") -> list[str]:
    """Command lines bulksubmit would submit (--dry-run output)."""
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "flux"), "bulksubmit",
                        "--dry-run", *argv], input=stdin, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return [ln.removeprefix("bulksubmit: submit ") for ln in r.stdout.splitlines()]


def test_bulksubmit_inputs_products_links_and_placeholders(tmp_path):
    assert _bulk("echo", "{}", ":::", "a", "b") == ["echo a", "echo b"]
    assert _bulk("echo", "{0}{1}", ":::", "1", "2", ":::", "x", "y") == \
        ["echo 1x", "echo 1y", "echo 2x", "echo 2y"]
    assert _bulk("echo", "{0}{1}", ":::", "1", "2", "3", ":::+", "x", "y") == \
        ["echo 1x", "echo 2y", "echo 3x"]
    f = tmp_path / "list"
    f.write_text("dir/a.txt\ndir/b.c\n")
    lines = _bulk("p", "{.%}", "{./}", "{.//}", "{./%}", "{seq}", "{seq1}", "::::", str(f))
    assert lines == ["p dir/a a.txt dir a 0 1", "p dir/b b.c dir b 1 2"]
    assert _bulk("-n", "{}", "hostname", stdin="2\n4\n") == ["-n2 hostname", "-n4 hostname"]
    assert _bulk("--define=up=x.upper()", "echo", "{0.up}", ":::", "q") == ["echo Q"]
    assert _bulk("--sep=none", stdin="a b  c") == ["a", "b", "c"]


def test_bulksubmit_errors():
    flux = os.path.join(os.path.dirname(sys.executable), "flux")
    r = subprocess.run([flux, "bulksubmit", "--dry-run", "echo", "{3}", ":::", "a"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Invalid replacement index" in r.stderr
    r = subprocess.run([flux, "bulksubmit", "echo", ":::+", "a"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "must follow another input list" in r.stderr


# ------------------------------------------------------------ real jobs


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(1)
    yield i
    i.stop()


def test_submit_prints_f58_and_mini_alias(inst):
    r = inst.flux("submit", TEST_EXEC, "true", check=True)
    jobid = r.stdout.strip()
    assert jobid[0] in "ƒf" and len(r.stdout.splitlines()) == 1
    info = inst.flux("job", "status", jobid)
    assert info.returncode == 0, info.stderr
    r = inst.flux("mini", "submit", "--dry-run", "true")
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == 1
    assert "flux mini is deprecated" in r.stderr


def test_submit_errors_are_named(inst):
    r = inst.flux("submit", "--urgency=99", "true")
    assert r.returncode == 1 and "flux-submit: --urgency: 99 is out of range 0-31" in r.stderr
    r = inst.flux("submit", "--flags=nope", "true")
    assert r.returncode == 1 and "Unknown flag nope" in r.stderr
    r = inst.flux("submit", "--bogus-option", "true")
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr
    r = inst.flux("submit", "--cc=1-2", "--bcc=1-2", "true")
    assert r.returncode == 1 and "only one of --cc or --bcc" in r.stderr


def test_submit_cc_sets_flux_job_cc_and_prints_ids_in_order(inst):
    r = inst.flux("submit", "--cc=3-5", TEST_EXEC, "--wait", "true", check=True)
    ids = r.stdout.split()
    assert len(ids) == 3
    for cc, jobid in zip(("3", "4", "5"), ids, strict=True):
        spec = json.loads(inst.flux("job", "info", jobid, "jobspec", check=True).stdout)
        assert spec["attributes"]["system"]["environment"]["FLUX_JOB_CC"] == cc
    r = inst.flux("submit", "--bcc=1-2", "--quiet", TEST_EXEC, "true", check=True)
    assert r.stdout == ""


def test_submit_cc_substitutes_placeholders(inst):
    r = inst.flux("submit", "--cc=1-2", "--job-name=n{cc}", TEST_EXEC, "echo", "{cc}",
                  check=True)
    for n, jobid in enumerate(r.stdout.split(), 1):
        spec = json.loads(inst.flux("job", "info", jobid, "jobspec", check=True).stdout)
        assert spec["tasks"][0]["command"] == ["echo", str(n)]
        assert spec["attributes"]["system"]["job"]["name"] == f"n{n}"


def test_submit_wait_exit_code_and_verbose(inst):
    r = inst.flux("submit", "--wait", "-v", "sh", "-c", "exit 5")
    assert r.returncode == 5, r.stderr
    assert "failed: status=1280" in r.stderr
    r = inst.flux("submit", "--wait-event=start", TEST_EXEC, "true", check=True)
    assert r.stdout.strip()


def test_submit_watch_copies_output(inst):
    r = inst.flux("submit", "--cc=1-2", "--watch", "sh", "-c", "echo out$FLUX_JOB_CC; echo err >&2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "out1" in lines and "out2" in lines
    assert r.stderr.count("err") == 2


def test_submit_progress_needs_a_tty_and_jps_summary(inst):
    r = inst.flux("submit", "--cc=1-4", "--progress", "--jps", TEST_EXEC, "true", check=True)
    assert "stdout is not a tty. Ignoring --progress option" in r.stderr
    r = inst.flux("submit", "--cc=1-4", "--jps", TEST_EXEC, "true", check=True)
    assert "4 jobs in" in r.stderr and "job/s" in r.stderr


def test_submit_hold_then_urgency_releases(inst):
    jobid = inst.flux("submit", "--urgency=hold", TEST_EXEC, "true", check=True).stdout.strip()
    inst.flux("job", "wait-event", jobid, "priority", check=True)
    inst.flux("job", "urgency", jobid, "default", check=True)
    assert inst.flux("job", "status", jobid).returncode == 0


def test_submit_log_files(inst, tmp_path):
    log = tmp_path / "ids.log"
    r = inst.flux("submit", f"--log={log}", "--cc=1-2", TEST_EXEC, "true", check=True)
    assert r.stdout == "" and len(log.read_text().split()) == 2


# ------------------------------------------------------------------ run


def test_run_exit_codes_and_output(inst):
    assert inst.flux("run", "true").returncode == 0
    r = inst.flux("run", "sh", "-c", "echo hello; echo oops >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "hello\n"
    assert "oops" in r.stderr and "task(s) exited with exit code 3" in r.stderr
    r = inst.flux("run", "sh", "-c", "kill -9 $$")
    assert r.returncode == 137 and "Killed" in r.stderr
    assert inst.flux("run", TEST_EXEC, "true").returncode == 0


def test_run_labels_and_multiple_tasks(inst):
    r = inst.flux("run", "-n2", "-l", "sh", "-c", "echo rank$FLUX_TASK_RANK")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == ["0: rank0", "1: rank1"]


def test_run_verbose_and_events(inst):
    r = inst.flux("run", "-vv", TEST_EXEC, "true")
    assert r.returncode == 0
    assert r.stderr.startswith("jobid: ")
    assert "job.submit" in r.stderr and "job.clean" in r.stderr


def test_run_rejected_or_canceled_job_exits_1(inst):
    r = inst.flux("run", "-n10000", "true")  # rejected at submission
    assert r.returncode == 1 and "flux-run: unsatisfiable request" in r.stderr
    jobid = inst.flux("submit", "--urgency=hold", "true", check=True).stdout.strip()
    inst.flux("cancel", "-m", "changed my mind", jobid, check=True)
    r = inst.flux("job", "attach", jobid)  # never reached finish
    assert r.returncode == 1
    assert f"job.exception {jobid} type=cancel severity=0 changed my mind" in r.stderr


def test_run_stdin_is_forwarded(inst):
    r = inst.flux("run", "cat", input="line one\nline two\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "line one\nline two\n"


def test_run_dry_run():
    flux = os.path.join(os.path.dirname(sys.executable), "flux")
    r = subprocess.run([flux, "run", "--dry-run", "-n2", "hostname"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    assert json.loads(r.stdout)["resources"][0]["count"] == 2


@pytest.mark.slow
def test_cc_ten_thousand_jobs_batched(inst):
    """10,000 copies go in as pipelined batches (rate printed by --jps)."""
    r = inst.flux("submit", "--cc=1-10000", "--urgency=hold", "--quiet", "--jps", "true",
                  timeout=600)
    assert r.returncode == 0, r.stderr
    rate = float(r.stderr.rsplit(":", 1)[1].split()[0])
    print(f"10000 jobs: {r.stderr.strip()}")  # speed is bench/jobs_throughput.py's business
    assert rate > 0
    assert len(r.stdout.split()) == 0  # --quiet
    inst.flux("cancel", "--all", check=True, timeout=300)


def _run_bg(inst, *args: str) -> tuple[subprocess.Popen, str]:
    """Start `flux run -v ARGS` and return it with its job id once the job started."""
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "flux"), "run", "-v",
                             *args], env=inst.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert line.startswith("jobid: "), line
    jobid = line.split()[1]
    inst.flux("job", "wait-event", jobid, "start", check=True)
    return proc, jobid


def test_run_forwards_signals_and_double_ctrl_c_cancels(inst):
    import signal

    proc, jobid = _run_bg(inst, "sleep", "30")
    proc.send_signal(signal.SIGTERM)  # forwarded to the tasks
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    proc, jobid = _run_bg(inst, "sleep", "30")
    proc.send_signal(signal.SIGINT)
    assert "one more ctrl-C within 2s to cancel" in proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    assert "type=cancel" in proc.stderr.read()
    ev = inst.flux("job", "wait-event", "-f", "json", jobid, "exception", check=True).stdout
    assert json.loads(ev)["context"]["note"] == "interrupted by ctrl-C"


def test_progress_bar_on_a_terminal(inst):
    import pty

    master, slave = pty.openpty()
    try:
        r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "flux"), "submit",
                            "--cc=1-3", "--progress", "--jps", TEST_EXEC, "true"],
                           env=inst.env, stdout=slave, stderr=subprocess.PIPE, timeout=60)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert r.returncode == 0, r.stderr
    text = out.decode()
    assert "Submitting 3 jobs: [" in text and "100.0%" in text and "job/s" in text
    ids = re.findall(r"\033\[K([ƒf][1-9A-HJ-NP-Za-km-z]+)\r?\n", text)
    assert len(ids) == 3  # each id on its own line, the bar cleared before it
