"""The kernel's commands: flux start, exec, ping, overlay, getattr/setattr/lsattr,
dmesg, logger, event, shutdown."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess

import pytest
from conftest import FLUX


def start(*args, input=None, env=None, timeout=60):
    """Run `flux start ARGS...` to completion."""
    e = dict(os.environ, **(env or {}))
    e.pop("FLUX_URI", None)
    e["PATH"] = os.path.dirname(FLUX) + os.pathsep + e.get("PATH", "")
    return subprocess.run([FLUX, "start", *args], input=input, capture_output=True, text=True,
                          env=e, timeout=timeout)


class Lines:
    """Lines from a child's stdout pipe, read with os.read behind select (a buffered
    file object would hide lines it already read from select)."""

    def __init__(self, *argv, env):
        self.proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, env=env)
        self.fd = self.proc.stdout.fileno()
        self.buf = b""

    def get(self, timeout: float = 10.0) -> str | None:
        """The next line, or None if none arrived within `timeout` (waits on the pipe)."""
        while b"\n" not in self.buf:
            if not select.select([self.fd], [], [], timeout)[0]:
                return None
            data = os.read(self.fd, 65536)
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def inst3():
    import conftest

    i = conftest.Instance(3)
    yield i
    i.stop()


# -------------------------------------------------------------- flux start
def test_start_exit_code_and_every_broker_gone():
    r = start("--test-size=3", "sh", "-c",
              "flux exec -r all flux getattr broker.pid; exit 7")
    assert r.returncode == 7, r.stderr
    pids = [int(x) for x in r.stdout.split()]
    assert len(pids) == 3
    for pid in pids:  # flux start returned only after every broker exited
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_start_exit_code_when_killed_by_signal():
    r = start("--test-size=2", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM


def test_start_command_not_found():
    r = start("no-such-command-xyz")
    assert r.returncode == 127
    assert "flux-start: no-such-command-xyz: No such file or directory" in r.stderr


def test_start_without_command_runs_an_interactive_shell():
    r = start("--test-size=2", input="echo in-shell size=$(flux getattr size)\nexit 5\n",
              env={"SHELL": "/bin/sh"})
    assert r.returncode == 5
    assert r.stdout == "in-shell size=2\n"


def test_start_setattr_and_broker_opts():
    r = start("-Stest.one=1", "--setattr=test.two=2", "--broker-opts=-Stest.three=3,-Stest.four=4",
              "-o,-Stest.five=5", "--test-size=2", "sh", "-c",
              "for a in one two three four five; do flux getattr test.$a; done; "
              "flux exec -r 1 flux getattr test.four")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "2", "3", "4", "5", "4"]
    r = start("-Snovalue", "true")
    assert r.returncode == 1 and "--setattr 'novalue' must be ATTR=VAL" in r.stderr


def test_start_conf_values_files_and_dirs(tmp_path):
    (tmp_path / "a.toml").write_text('[sched]\npolicy = "fcfs"\n')
    confdir = tmp_path / "conf.d"
    confdir.mkdir()
    (confdir / "x.toml").write_text("[tbl]\nn = 1\n")
    code = "import flux, json; print(json.dumps(flux.Flux().rpc('config.get').get(), sort_keys=True))"
    import sys

    r = start("--conf=access.allow-guest-user=true", f"--conf={tmp_path / 'a.toml'}",
              f"--config-path={confdir}", sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ('{"access": {"allow-guest-user": true}, '
                                '"sched": {"policy": "fcfs"}, "tbl": {"n": 1}}')
    r = start(f"--conf={tmp_path / 'missing.toml'}", "true")
    assert r.returncode == 1 and "missing.toml" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.toml").write_text("this is = = not toml")
    r = start(f"--conf={tmp_path / 'bad.toml'}", "true")
    assert r.returncode == 1 and "bad.toml" in r.stderr


def test_start_initial_program_environment():
    import sys

    code = ("import os; print(os.environ.get('FLUX_URI','').startswith('local://'), "
            "[k for k in os.environ if k.startswith(('FLUX_JOB_', 'PMI_', 'SLURM_'))], "
            "os.environ.get('FLUX_ENCLOSING_ID'))")
    r = start("-Sjobid=fABC", sys.executable, "-c", code,
              env={"FLUX_JOB_ID": "f123", "PMI_RANK": "3", "SLURM_JOBID": "9"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True [] fABC"


def test_start_statedir_and_jobid_attributes(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    r = start(f"-Sstatedir={state}", "-Sjobid=f2", "sh", "-c",
              "flux getattr statedir; flux getattr jobid; flux getattr instance-level; "
              "flux setattr statedir /elsewhere")
    assert r.returncode == 1  # the setattr: statedir is read-only
    assert r.stdout.split() == [str(state), "f2", "0"]
    assert "attribute statedir is read-only" in r.stderr
    r = start("flux", "getattr", "statedir")  # unset by default
    assert r.returncode == 1 and "attribute statedir is not set" in r.stderr


def test_nested_start_has_parent_uri():
    r = start("sh", "-c", 'echo "$FLUX_URI"; flux start flux getattr parent-uri')
    assert r.returncode == 0, r.stderr
    outer, inner_parent = r.stdout.split()
    assert outer == inner_parent


def test_start_rundir_and_noexec(tmp_path):
    rundir = tmp_path / "rd"
    r = start(f"--rundir={rundir}", "--test-size=2", "flux", "getattr", "local-uri")
    assert r.returncode == 0
    assert r.stdout.strip() == f"local://{rundir}/local-0"
    assert rundir.is_dir() and not list(rundir.glob("local-*"))  # sockets cleaned up
    r = start("-X", "--test-size=2", "true")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 2
    assert "--boot-rank=0" in lines[0] and "--boot-rank=1" in lines[1]
    assert start("--test-size=0", "true").returncode == 1
    r = start("--test-hosts=a,b", "true")
    assert r.returncode == 1 and "--test-hosts requires --test-size" in r.stderr


# --------------------------------------------------------------- flux exec
def test_exec_forwards_stdout_stderr_and_exit_codes(inst3):
    r = inst3.flux("exec", "-r", "all", "sh", "-c",
                   'echo out-$(flux getattr rank); echo err-$(flux getattr rank) >&2')
    assert r.returncode == 0
    assert sorted(r.stdout.split()) == ["out-0", "out-1", "out-2"]
    assert sorted(r.stderr.split()) == ["err-0", "err-1", "err-2"]
    r = inst3.flux("exec", "-r", "all", "sh", "-c", "exit $(flux getattr rank)")
    assert r.returncode == 2  # the largest exit code
    assert "flux-exec: Error: rank 1: sh: exited with code 1" in r.stderr
    r = inst3.flux("exec", "-r", "1", "sh", "-c", "kill -9 $$")
    assert r.returncode == 128 + 9 and "killed by signal 9" in r.stderr


def test_exec_rank_selection_and_labels(inst3):
    r = inst3.flux("exec", "-r", "all", "-x", "0,2", "flux", "getattr", "rank")
    assert (r.returncode, r.stdout) == (0, "1\n")
    r = inst3.flux("exec", "-l", "-r", "0-1", "printf", "a\nb")
    assert sorted(r.stdout.splitlines()) == ["0: a", "0: b", "1: a", "1: b"]
    r = inst3.flux("exec", "-r", "5", "true")
    assert r.returncode == 1 and "rank 5 is not in this instance of size 3" in r.stderr
    r = inst3.flux("exec", "-r", "1-x", "true")
    assert r.returncode == 1 and "invalid idset" in r.stderr
    r = inst3.flux("exec", "-r", "1", "/no/such/program")
    assert r.returncode == 127 and "rank 1: /no/such/program: No such file or directory" in r.stderr


def test_exec_stdin_and_cwd(inst3, tmp_path):
    r = inst3.flux("exec", "-l", "-r", "0,2", "cat", input="from stdin\n")
    assert sorted(r.stdout.splitlines()) == ["0: from stdin", "2: from stdin"]
    r = inst3.flux("exec", "-n", "-r", "1", "cat", input="ignored\n")
    assert (r.returncode, r.stdout) == (0, "")
    r = inst3.flux("exec", "-r", "2", "-d", str(tmp_path), "pwd")
    assert r.stdout.strip() == str(tmp_path)


# --------------------------------------------------------------- flux ping
def test_ping(inst3):
    r = inst3.flux("ping", "-c", "3", "-i", "0.01", "2")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    for seq, line in enumerate(lines):
        assert re.fullmatch(rf"2!broker\.ping pad=0 seq={seq} time=\d+\.\d{{3}} ms \(c0\.\d+!0\)", line)
    r = inst3.flux("ping", "-c", "1", "--pad=100", "1")
    assert "pad=100" in r.stdout
    r = inst3.flux("ping", "-c", "1", "7")
    assert r.returncode == 1 and "flux-ping: rank 7 is not in this instance of size 3" in r.stderr
    r = inst3.flux("ping", "-c", "1", "nosuchsvc")
    assert r.returncode == 1 and "No service matching nosuchsvc.ping is registered" in r.stderr
    r = inst3.flux("ping", "--batch", "-c", "4", "1")
    assert r.returncode == 0 and [ln.split()[2] for ln in r.stdout.splitlines()] == [
        "seq=0", "seq=1", "seq=2", "seq=3"]
    assert inst3.flux("ping", "--batch", "1").returncode == 1  # needs a count


def test_overlay_status_subtree_and_bad_rank(inst3):
    r = inst3.flux("overlay", "status", "-r", "2")
    assert re.fullmatch(r"2 \S+: full\n", r.stdout)
    r = inst3.flux("overlay", "status", "-r", "3")
    assert r.returncode == 1 and "rank 3 is not in this instance of size 3" in r.stderr
    assert inst3.flux("overlay", "parentof", "2").stdout == "0\n"
    r = inst3.flux("overlay", "parentof", "0")
    assert r.returncode == 1 and "rank 0 has no parent" in r.stderr


# ----------------------------------------------- getattr / setattr / lsattr
def test_getattr_setattr_lsattr(inst3):
    assert inst3.flux("getattr", "size").stdout == "3\n"
    assert inst3.flux("getattr", "rundir").stdout.strip() == inst3.rundir
    r = inst3.flux("getattr", "no-such-attr")
    assert r.returncode == 1 and r.stderr == "flux-getattr: attribute no-such-attr is not set\n"
    assert inst3.flux("setattr", "log-stderr-level", "4").returncode == 0
    assert inst3.flux("getattr", "log-stderr-level").stdout == "4\n"
    inst3.flux("setattr", "log-stderr-level", "3", check=True)
    r = inst3.flux("setattr", "size", "9")
    assert r.returncode == 1 and "attribute size is read-only" in r.stderr
    r = inst3.flux("setattr", "log-level", "chatty")
    assert r.returncode == 1 and "unknown log level 'chatty'" in r.stderr
    names = inst3.flux("lsattr").stdout.split()
    assert names == sorted(names)
    for n in ("rank", "size", "local-uri", "rundir", "instance-level", "version", "broker.pid",
              "log-level", "log-ring-size"):
        assert n in names
    values = dict(ln.split(None, 1) for ln in inst3.flux("lsattr", "-v").stdout.splitlines())
    assert values["size"] == "3" and values["rank"] == "0"
    # on another rank: each broker has its own attributes
    r = inst3.flux("exec", "-r", "2", "flux", "getattr", "rank")
    assert r.stdout == "2\n"


# ------------------------------------------------------- dmesg and logger
def test_logger_and_dmesg(make_instance):
    inst = make_instance(2)
    inst.flux("logger", "--severity=err", "first", "message", check=True)
    inst.flux("logger", "--appname=myapp", "second", check=True)
    inst.flux("exec", "-r", "1", "flux", "logger", "-s", "warning", "from-rank-1", check=True)
    out = inst.flux("dmesg", check=True).stdout
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z logger\.err\[0\]: first message$",
                     out, re.M)
    assert re.search(r" myapp\.notice\[0\]: second$", out, re.M)
    assert re.search(r" logger\.warning\[1\]: from-rank-1$", out, re.M)
    human = inst.flux("dmesg", "-H", check=True).stdout
    assert re.search(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d{6} logger\.err\[0\]: first message$",
                     human, re.M)
    r = inst.flux("logger", "--severity=loud", "x")
    assert r.returncode == 1 and "unknown log level 'loud'" in r.stderr
    # -c prints then clears; -C clears only
    assert "second" in inst.flux("dmesg", "-c", check=True).stdout
    assert "second" not in inst.flux("dmesg", check=True).stdout
    inst.flux("logger", "third", check=True)
    assert inst.flux("dmesg", "-C", check=True).stdout == ""
    assert "third" not in inst.flux("dmesg", check=True).stdout


def test_dmesg_follow(instance):
    follow = Lines(FLUX, "dmesg", "--follow", "--new", env=instance.env)
    try:
        # --new: no backlog. The follower is registered once a probe shows up: log
        # probes, each time waiting on its output pipe, until one is printed
        for _ in range(50):
            instance.flux("logger", "follow-probe", check=True)
            line = follow.get(timeout=0.2)
            if line:
                break
        assert line.endswith("logger.notice[0]: follow-probe")
        instance.flux("logger", "follow-second", check=True)
        while line.endswith("follow-probe"):
            line = follow.get()
        assert line.endswith("logger.notice[0]: follow-second")
    finally:
        follow.stop()
    # the broker dropped the follower cleanly
    instance.flux("logger", "after-follower", check=True)
    assert "after-follower" in instance.flux("dmesg", check=True).stdout


# --------------------------------------------------------------- flux event
def test_event_pub_sub(inst3):
    sub = Lines(FLUX, "event", "sub", "cli.ev.", env=inst3.env)
    try:
        # the subscription is in place once a probe event comes through: publish
        # probes, each time waiting on the pipe, until one is printed
        for _ in range(50):
            inst3.flux("event", "pub", "cli.ev.probe", check=True)
            line = sub.get(timeout=0.2)
            if line:
                break
        assert line == "cli.ev.probe"
        inst3.flux("exec", "-r", "2", "flux", "event", "pub", "cli.ev.json", '{"n": 1}', check=True)
        inst3.flux("event", "pub", "-r", "cli.ev.raw", "plain text", check=True)
        lines = []
        while len(lines) < 2:
            line = sub.get()
            assert line is not None, f"missing events after {lines}"
            if line != "cli.ev.probe":
                lines.append(line)
        assert lines == ['cli.ev.json\t{"n":1}', "cli.ev.raw\tplain text"]
    finally:
        sub.stop()
    r = inst3.flux("event", "pub", "cli.bad", "{not json")
    assert r.returncode == 1 and "payload is not valid JSON" in r.stderr


def test_event_sub_count(inst3):
    import flux

    h = flux.Flux(inst3.uri)
    sub = Lines(FLUX, "event", "sub", "--count=2", "cnt.", env=inst3.env)
    try:
        got = []
        while len(got) < 2:
            h.event_send("cnt.tick")
            line = sub.get(timeout=0.2)
            if line:
                got.append(line)
        assert got == ["cnt.tick", "cnt.tick"]
        assert sub.proc.wait(timeout=10) == 0  # exits after --count events
    finally:
        sub.stop()


# ------------------------------------------------------------ flux shutdown
def test_shutdown_stops_the_instance(make_instance):
    inst = make_instance(3)
    import flux

    h = flux.Flux(inst.uri)
    pids = [int(h.rpc("attr.get", {"name": "broker.pid"}, nodeid=r).get()["value"])
            for r in range(3)]
    r = inst.flux("shutdown")
    assert r.returncode == 0, r.stderr
    rc = inst.proc.wait(timeout=30)  # the initial program was stopped, flux start returned
    assert rc == 128 + signal.SIGTERM
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_commands_without_an_instance(tmp_path):
    e = dict(os.environ, FLUX_URI=f"local://{tmp_path}/none")
    for cmd in (["getattr", "size"], ["ping", "0"], ["dmesg"], ["exec", "true"],
                ["overlay", "status"], ["logger", "x"], ["shutdown"], ["lsattr"]):
        r = subprocess.run([FLUX, *cmd], capture_output=True, text=True, env=e, timeout=30)
        assert r.returncode == 1, cmd
        assert f"Unable to connect to Flux at local://{tmp_path}/none" in r.stderr, cmd
        assert "Traceback" not in r.stderr
