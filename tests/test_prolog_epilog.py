"""The `prolog-epilog` jobtap plugin (plugins/jobtap-prolog-epilog) on real instances:
scripts from `[job-manager.prolog]`/`[job-manager.epilog]`, the prolog-start/finish hold
before the job starts, epilog-start/finish before the free, failures and timeouts."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest
from flux_jobtap_perilog.config import ConfigError, parse_config

HOST = socket.gethostname()


def script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def conf(kind: str, cmd: str, **kw) -> list[str]:
    out = [f"job-manager.{kind}.command={json.dumps([cmd])}"]
    for k, v in kw.items():
        out.append(f"job-manager.{kind}.{k.replace('_', '-')}={json.dumps(v)}")
    return out


def events(inst, jobid: str) -> list[tuple[str, dict]]:
    r = inst.flux("job", "eventlog", "-f", "json", jobid, check=True)
    return [(e["name"], e.get("context", {})) for e in map(json.loads, r.stdout.splitlines())]


def names(evs) -> list[str]:
    return [n for n, _ in evs]


def submit(inst, *args: str) -> str:
    return inst.flux("submit", *args, check=True).stdout.strip()


def wait_clean(inst, jobid: str) -> list[tuple[str, dict]]:
    inst.flux("job", "wait-event", "-q", "-t", "60", jobid, "clean", check=True)
    return events(inst, jobid)


# ------------------------------------------------------------------ config

def test_config_parsing():
    assert parse_config({}).prolog is None
    c = parse_config({"job-manager": {"prolog": {"command": ["/bin/true"], "timeout": "5s"}}})
    assert c.prolog.command == ("/bin/true",) and c.prolog.timeout == 5.0
    assert c.epilog is None
    # the IMP's `run` is the default command when exec.imp is set
    c = parse_config({"exec": {"imp": "/usr/libexec/flux-imp"},
                      "job-manager": {"epilog": {}}})
    assert c.epilog.command == ("/usr/libexec/flux-imp", "run", "epilog") and c.epilog.via_imp
    assert c.epilog.timeout == 0.0  # the epilog has no default timeout
    for bad, where in [({"prolog": {}}, "job-manager.prolog.command is required"),
                       ({"prolog": {"command": 3}}, "job-manager.prolog.command must be"),
                       ({"prolog": {"command": ["x"], "timeout": "soon"}}, "job-manager.prolog.timeout"),
                       ({"epilog": {"command": ["x"], "per-rank": "yes"}}, "job-manager.epilog.per-rank"),
                       ({"prolog": {"command": ["x"], "kill-timout": 1}}, "unknown key(s) kill-timout")]:
        with pytest.raises(ConfigError, match=where.replace("(", r"\(").replace(")", r"\)")):
            parse_config({"job-manager": bad})


def test_bad_config_rejects_jobs_with_the_key(make_instance):
    inst = make_instance(1, conf=['job-manager.prolog.timeout="5s"'])
    r = inst.flux("submit", "true")
    assert r.returncode != 0
    assert "job-manager.prolog.command is required" in r.stderr


# ------------------------------------------------------------------ prolog

def test_prolog_and_epilog_run_around_the_job(make_instance, tmp_path):
    log = tmp_path / "log"
    pro = script(tmp_path / "prolog.sh",
                 f'echo "prolog $FLUX_JOB_ID $FLUX_JOB_USERID $FLUX_JOB_RANKS" >> {log}\n'
                 'echo prolog says hi\n')
    epi = script(tmp_path / "epilog.sh", f'echo "epilog $FLUX_JOB_ID" >> {log}\n')
    inst = make_instance(1, conf=conf("prolog", pro) + conf("epilog", epi))
    jobid = submit(inst, "--job-name=app", "sh", "-c", f"echo task >> {log}")
    evs = wait_clean(inst, jobid)
    n = names(evs)
    # prolog before the start, epilog between finish and free
    assert n.index("alloc") < n.index("prolog-start") < n.index("prolog-finish") < n.index("start")
    assert n.index("finish") < n.index("epilog-start") < n.index("epilog-finish") < n.index("free")
    assert dict(evs)["prolog-finish"] == {"description": "job-manager.prolog", "status": 0}
    assert dict(evs)["epilog-finish"] == {"description": "job-manager.epilog", "status": 0}
    assert "exception" not in n
    f58 = inst.flux("job", "id", "-t", "f58", jobid, check=True).stdout.strip()
    assert log.read_text().splitlines() == [f"prolog {f58} {os.getuid()} 0", "task",
                                            f"epilog {f58}"]
    # the prolog's output is in the broker log, naming the job
    assert f"job-manager.prolog: {f58}: rank 0: prolog says hi" in inst.flux("dmesg").stdout
    assert inst.flux("job", "status", jobid).returncode == 0


def test_failing_prolog_raises_prolog_exception(make_instance, tmp_path):
    marker = tmp_path / "ran"
    pro = script(tmp_path / "prolog.sh", "echo no scratch space >&2\nexit 3\n")
    epi = script(tmp_path / "epilog.sh", f"echo epilog > {tmp_path / 'epi'}\n")
    inst = make_instance(1, conf=conf("prolog", pro) + conf("epilog", epi)
                         + [f'resource.config=[{{hosts="{HOST}", cores="0"}}]'])
    jobid = submit(inst, "touch", str(marker))
    evs = wait_clean(inst, jobid)
    n = names(evs)
    assert "start" not in n and not marker.exists()
    exc = dict(evs)["exception"]
    assert exc["type"] == "prolog" and exc["severity"] == 0
    assert exc["note"] == "prolog failed with exit code=3"
    assert dict(evs)["prolog-finish"]["status"] == 3 << 8
    # the epilog still runs after a failed prolog, then the resources are freed
    assert n.index("epilog-finish") < n.index("free") < n.index("clean")
    assert (tmp_path / "epi").read_text() == "epilog\n"
    st = inst.flux("job", "status", jobid)
    assert st.returncode != 0
    assert "no scratch space" in inst.flux("dmesg").stdout
    # the only core came back: nothing was drained, the next job can be allocated
    assert "drain" not in inst.flux("resource", "status").stdout.lower()


def test_prolog_that_hangs_times_out_and_its_process_group_is_killed(make_instance, tmp_path):
    pidfile = tmp_path / "child.pid"
    # the script starts a background child in its process group, then hangs
    pro = script(tmp_path / "prolog.sh", f"sleep 300 &\necho $! > {pidfile}\nwait\n")
    inst = make_instance(1, conf=conf("prolog", pro, timeout="1s", kill_timeout=1))
    jobid = submit(inst, "true")
    evs = wait_clean(inst, jobid)
    exc = dict(evs)["exception"]
    assert exc["type"] == "prolog" and exc["severity"] == 0
    assert exc["note"] == "prolog timed out after 1s (job-manager.prolog.timeout)"
    assert "start" not in names(evs)
    child = int(pidfile.read_text())
    # the hung script's child was signaled too (group kill): it is gone or a zombie
    try:
        with open(f"/proc/{child}/stat") as f:
            assert f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        pass


def test_cancel_during_prolog_terminates_it(make_instance, tmp_path):
    started = tmp_path / "started"
    pro = script(tmp_path / "prolog.sh",
                 f"trap 'echo term > {tmp_path / 'term'}; exit 143' TERM\n"
                 f"touch {started}\nwhile :; do sleep 0.1; done\n")
    inst = make_instance(1, conf=conf("prolog", pro))
    jobid = submit(inst, "true")
    inst.flux("job", "wait-event", "-q", "-t", "30", jobid, "prolog-start", check=True)
    inst.flux("cancel", jobid, check=True)
    evs = wait_clean(inst, jobid)
    n = names(evs)
    assert "start" not in n
    assert [c["type"] for name, c in evs if name == "exception"] == ["cancel"]
    assert dict(evs)["prolog-finish"]["status"] != 0
    assert (tmp_path / "term").read_text() == "term\n"


def test_failing_epilog_raises_epilog_exception(make_instance, tmp_path):
    epi = script(tmp_path / "epilog.sh", "exit 1\n")
    inst = make_instance(1, conf=conf("epilog", epi))
    jobid = submit(inst, "true")
    evs = wait_clean(inst, jobid)
    n = names(evs)
    assert n.index("finish") < n.index("epilog-finish") < n.index("exception") < n.index("clean")
    exc = dict(evs)["exception"]
    assert (exc["type"], exc["severity"], exc["note"]) == ("epilog", 0, "epilog failed with exit code=1")
    assert dict(evs)["finish"]["status"] == 0


def test_per_rank_prolog_runs_on_every_rank_of_the_job(make_instance, tmp_path):
    out = tmp_path / "ranks"
    pro = script(tmp_path / "prolog.sh", f'echo "$(flux getattr rank) $FLUX_JOB_RANKS" >> {out}\n')
    inst = make_instance(2, conf=conf("prolog", pro, per_rank=True))
    jobid = submit(inst, "-N2", "-n2", "true")
    evs = wait_clean(inst, jobid)
    assert "start" in names(evs)
    assert sorted(out.read_text().splitlines()) == ["0 0-1", "1 0-1"]


def test_per_rank_prolog_failure_names_the_rank(make_instance, tmp_path):
    pro = script(tmp_path / "prolog.sh", 'test "$(flux getattr rank)" = 0\n')
    inst = make_instance(2, conf=conf("prolog", pro, per_rank=True))
    jobid = submit(inst, "-N2", "-n2", "true")
    exc = dict(wait_clean(inst, jobid))["exception"]
    assert exc["note"] == "prolog failed with exit code=1 on rank(s) 1"


def test_missing_prolog_command_fails_the_job_clearly(make_instance, tmp_path):
    inst = make_instance(1, conf=conf("prolog", str(tmp_path / "nope.sh")))
    jobid = submit(inst, "true")
    exc = dict(wait_clean(inst, jobid))["exception"]
    assert exc["type"] == "prolog"
    assert "nope.sh" in exc["note"]


# ------------------------------------------------- through the IMP (multi-user)

def _start_as(user: str, conf_args: list[str]):
    """An instance run by the unprivileged `user` (the IMP refuses any other caller)."""
    import pwd
    import subprocess
    import sys
    import tempfile

    from conftest import FLUX

    pw = pwd.getpwnam(user)
    rundir = tempfile.mkdtemp(prefix="flux-test-")
    os.chown(rundir, pw.pw_uid, pw.pw_gid)
    env = dict(os.environ, HOME=pw.pw_dir, USER=user)
    env["PATH"] = os.path.dirname(FLUX) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(
        [FLUX, "start", "--test-size=1", f"--rundir={rundir}", *[f"--conf={c}" for c in conf_args],
         "--", sys.executable, "-c",
         "import os,sys; print(os.environ['FLUX_URI'], flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=rundir, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    uri = proc.stdout.readline().strip()
    if not uri:
        raise RuntimeError(f"instance failed to start: {proc.stderr.read()}")
    env["FLUX_URI"] = uri

    def flux(*args, check=True):
        r = subprocess.run([FLUX, *args], capture_output=True, text=True, env=env, cwd=rundir,
                           user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], timeout=60)
        if check and r.returncode:
            raise AssertionError(f"flux {' '.join(args)}: {r.stderr}")
        return r

    def stop():
        import shutil

        proc.stdin.close()
        proc.wait(timeout=60)
        shutil.rmtree(rundir, ignore_errors=True)

    return flux, stop


@pytest.mark.skipif(os.getuid() != 0, reason="needs root: a setuid IMP and an unprivileged owner")
def test_prolog_and_epilog_run_as_root_through_the_imp(tmp_path):
    import pwd

    from multiuser_env import ImpSetup

    outdir = tmp_path / "out"
    outdir.mkdir()
    os.chmod(tmp_path, 0o755)
    imp = ImpSetup(owner="flux", users=("alice",))
    try:
        pro = os.path.join(imp.dir, "prolog")
        epi = os.path.join(imp.dir, "epilog")
        hang = os.path.join(imp.dir, "hang")
        for path, body in ((pro, f'id -u > {outdir}/prolog\nenv | sort >> {outdir}/prolog\n'),
                           (epi, f'id -u > {outdir}/epilog\n'),
                           (hang, f'sleep 300 &\necho $! > {outdir}/child\nwait\n')):
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + body)
            os.chmod(path, 0o755)
        imp.data["run"] = {"prolog": {"command": pro}, "epilog": {"command": epi}}
        imp.write_conf()
        flux, stop = _start_as("flux", [f'exec.imp="{imp.path}"', "job-manager.prolog={}",
                                        "job-manager.epilog={}"])
        try:
            jobid = flux("submit", "true").stdout.strip()
            flux("job", "wait-event", "-q", "-t", "60", jobid, "clean")
            evs = [json.loads(line) for line in
                   flux("job", "eventlog", "-f", "json", jobid).stdout.splitlines()]
            n = [e["name"] for e in evs]
            assert "exception" not in n and n.index("prolog-finish") < n.index("start")
            lines = (outdir / "prolog").read_text().splitlines()
            assert lines[0] == "0"  # the IMP ran the root-configured script as root
            env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
            f58 = flux("job", "id", "-t", "f58", jobid).stdout.strip()
            assert env["FLUX_JOB_ID"] == f58 and env["FLUX_JOB_RANKS"] == "0"
            assert env["FLUX_JOB_USERID"] == env["FLUX_OWNER_USERID"] == str(pwd.getpwnam("flux").pw_uid)
            assert (outdir / "epilog").read_text() == "0\n"
        finally:
            stop()
        # a root prolog that hangs: the timeout kills it through `flux-imp kill`
        imp.data["run"] = {"prolog": {"command": hang}}
        imp.write_conf()
        flux, stop = _start_as("flux", [f'exec.imp="{imp.path}"', 'job-manager.prolog.timeout="1s"',
                                        "job-manager.prolog.kill-timeout=1"])
        try:
            jobid = flux("submit", "true").stdout.strip()
            flux("job", "wait-event", "-q", "-t", "60", jobid, "clean")
            exc = [json.loads(line) for line in flux("job", "eventlog", "-f", "json", jobid).stdout.splitlines()
                   if '"exception"' in line][0]["context"]
            assert exc["type"] == "prolog"
            assert exc["note"] == "prolog timed out after 1s (job-manager.prolog.timeout)"
            child = int((outdir / "child").read_text())
            try:
                with open(f"/proc/{child}/stat") as f:
                    assert f.read().split(")")[-1].split()[0] == "Z"
            except FileNotFoundError:
                pass
        finally:
            stop()
    finally:
        imp.remove()
