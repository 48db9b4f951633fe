"""Nested instances: flux batch/alloc, the child's attributes and resources, its URI
in the parent (flux uri, flux proxy, FLUX_URI=...), pstree, and the lifecycle
(cancel shuts the child down, a dead child fails its job, nothing is left running).
Every child here is a real broker started as a job's task."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

CONF = ['resource.config=[{hosts="vm", cores="0-7"}]']


@pytest.fixture
def inst(make_instance):
    return make_instance(1, conf=CONF)


def run(inst, *args, check=True, **kw):
    r = inst.flux(*args, timeout=120, **kw)
    if check:
        assert r.returncode == 0, f"flux {' '.join(args)}: {r.stderr}"
    return r


def wait_clean(inst, jobid: str) -> None:
    run(inst, "job", "wait-event", "-t", "90", jobid, "clean")


def job_info(inst, jobid: str) -> dict:
    import flux
    from flux.job.JobID import JobID

    h = flux.Flux(inst.uri)
    return h.rpc("job-list.list-id", {"id": int(JobID(jobid)), "attrs": ["all"]}).get()["job"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running
        with open(f"/proc/{pid}/stat") as fp:
            return fp.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: set[int], timeout: float) -> None:
    """Wait (on pidfds, no polling) until every process in pids has exited."""
    import select

    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue  # already gone
    try:
        p = select.poll()
        for fd in fds:
            p.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        left = set(fds)
        while left:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"still running: {[q for q in pids if alive(q)]}"
            for fd, _ev in p.poll(remaining * 1000):
                left.discard(fd)
                p.unregister(fd)
    finally:
        for fd in fds:
            os.close(fd)


def descendants(pid: int) -> set[int]:
    """Every process below pid (from /proc's parent links)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fp:
                    parent[int(d)] = int(fp.read().split(")")[-1].split()[1])
            except OSError:
                continue
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.update(kids)
        todo.extend(kids)
    return out


def child_env(inst, jobid: str) -> dict:
    return {"FLUX_URI": run(inst, "uri", "--local", jobid).stdout.strip()}


# ------------------------------------------------------------------ flux batch
def test_batch_wrap_child_attributes_resources_and_output(inst, tmp_path):
    """A batch job's script runs in a child instance of level 1 whose jobid, paths and
    parent-uri name the enclosing job, and whose resources are the job's R."""
    script = ("for a in instance-level jobid jobid-path parent-uri; do flux getattr $a; done; "
              "set -- $(flux resource list -n -s free); echo $3; flux run -n2 printenv FLUX_JOB_ID_PATH | sort -u")
    r = run(inst, "batch", "-n2", f"--cwd={tmp_path}", "--wrap", "sh", "-c", f"'{script}'")
    jobid = r.stdout.strip()
    wait_clean(inst, jobid)
    # the output file is in the job's working directory, named after the job
    out = (tmp_path / f"flux-{jobid}.out").read_text().split()
    level, child_jobid, path, parent_uri, ncores, task_path = out[:6]
    assert level == "1"
    assert child_jobid == jobid
    assert path == f"/{jobid}"
    assert parent_uri == inst.uri
    assert ncores == "2"  # the job's two cores are the whole child instance
    assert task_path.startswith(f"/{jobid}/") and task_path.count("/") == 2
    info = job_info(inst, jobid)
    assert info["name"] == "sh" and info["ntasks"] == 1
    assert info["annotations"]["user"]["uri"].startswith("ssh://")


def test_batch_script_directives_and_command_line_override(inst, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n"
                      "#FLUX: -n2 -c2            # two slots of two cores\n"
                      "#FLUX: --job-name=directed\n"
                      "#FLUX: --setattr=user.note='''It's a \"job\"'''\n"
                      "flux resource list -n -s free | awk '{print $3}'\n")
    r = run(inst, "batch", "--dry-run", str(script))
    js = json.loads(r.stdout)
    slot = js["resources"][0]
    assert slot["type"] == "slot" and slot["count"] == 2
    assert slot["with"][0] == {"type": "core", "count": 2}
    sysattr = js["attributes"]["system"]
    assert sysattr["job"]["name"] == "directed"
    assert js["attributes"]["user"]["note"] == "It's a \"job\""
    assert js["tasks"][0]["command"] == ["flux", "broker", "{{tmpdir}}/script"]
    assert sysattr["files"]["script"]["mode"] & 0o777 == 0o700
    assert sysattr["shell"]["options"]["per-resource"] == {"type": "node"}
    assert sysattr["shell"]["options"]["output"]["stdout"]["path"] == "flux-{{id}}.out"
    # the command line wins over the directives
    js = json.loads(run(inst, "batch", "--dry-run", "-n1", "--job-name=cli", str(script)).stdout)
    assert js["resources"][0]["count"] == 1
    assert js["attributes"]["system"]["job"]["name"] == "cli"
    # a real run: 2 slots x 2 cores = 4 cores in the child
    jobid = run(inst, "batch", f"--output={tmp_path}/out.txt", str(script)).stdout.strip()
    wait_clean(inst, jobid)
    assert (tmp_path / "out.txt").read_text().split() == ["4"]


def test_batch_bad_input_is_refused_with_a_reason(inst, tmp_path):
    orphan = tmp_path / "orphan.sh"
    orphan.write_text("#!/bin/sh\n#FLUX: -n1\nhostname\n#FLUX: --job-name=late\n")
    r = run(inst, "batch", str(orphan), check=False)
    assert r.returncode != 0 and "orphan directive" in r.stderr and "line 4" in r.stderr
    noshebang = tmp_path / "plain.txt"
    noshebang.write_text("hostname\n")
    r = run(inst, "batch", "-n1", str(noshebang), check=False)
    assert r.returncode != 0 and "does not appear to start with '#!'" in r.stderr
    r = run(inst, "batch", "--wrap", "hostname", check=False)
    assert r.returncode != 0 and "Number of slots to allocate must be specified" in r.stderr
    r = run(inst, "batch", "-n1", "--conf=no-such-config-name", "--wrap", "true", check=False)
    assert r.returncode != 0 and "no-such-config-name" in r.stderr
    r = run(inst, "jobs", "-a", "-no", "{id}")
    assert r.stdout.strip() == ""  # nothing was submitted


def test_batch_conf_and_broker_opts_configure_the_child(inst, tmp_path):
    conf = tmp_path / "child.toml"
    conf.write_text('[policy.limits]\nduration = "1h"\n')
    prog = ("import flux; h = flux.Flux(); c = h.rpc('config.get').get(); "
            "print(c['policy']['limits']['duration'], c['mine']['value'], "
            "h.attr_get('my.attr'))")
    jobid = run(inst, "batch", "-n1", f"--conf={conf}", "--conf=mine.value=42",
                "--broker-opts=-Smy.attr=hello", f"--output={tmp_path}/out",
                "--wrap", "python3", "-c", f'"{prog}"').stdout.strip()
    wait_clean(inst, jobid)
    assert (tmp_path / "out").read_text().split() == ["1h", "42", "hello"]


# ------------------------------------------------------------------ flux alloc
def test_alloc_runs_command_and_returns_its_exit_code(inst):
    r = run(inst, "alloc", "-n1", "sh", "-c", "flux getattr instance-level; exit 5",
            check=False)
    assert r.returncode == 5, r.stderr
    assert r.stdout.split() == ["1"]
    r = run(inst, "alloc", "-N1", "sh", "-c", "flux resource list -n -s free")
    assert r.stdout.split()[:3] == ["free", "1", "8"]  # -N alone: the whole node


def test_alloc_bg_uri_proxy_and_remote_submission(inst, tmp_path):
    jobid = run(inst, "alloc", "--bg", "-n2").stdout.strip()
    remote = run(inst, "uri", jobid).stdout.strip()
    local = run(inst, "uri", "--local", jobid).stdout.strip()
    host_and_path = remote[len("ssh://"):]
    assert remote.startswith("ssh://")
    assert local == "local://" + host_and_path[host_and_path.index("/"):]
    assert run(inst, "uri", f"{jobid}?local").stdout.strip() == local
    assert run(inst, "uri", "--remote", jobid).stdout.strip() == remote
    # FLUX_URI=$(flux uri JOBID) reaches the child: its job runs there
    r = run(inst, "submit", "--wait", "--output", f"{tmp_path}/out", "printenv",
            "FLUX_JOB_ID_PATH", env={"FLUX_URI": remote})
    inner = r.stdout.strip()
    assert (tmp_path / "out").read_text().strip() == f"/{jobid}/{inner}"
    # flux proxy runs a command connected to the child
    r = run(inst, "proxy", jobid, "flux", "getattr", "jobid")
    assert r.stdout.strip() == jobid
    r = run(inst, "proxy", jobid, "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3
    # the parent sees the child as one job
    info = job_info(inst, jobid)
    assert info["state"] == 16 and info["ntasks"] == 1
    r = run(inst, "jobs", "-no", "{id.f58} {ncores}")
    assert r.stdout.split() == [jobid, "2"]
    run(inst, "cancel", jobid)
    wait_clean(inst, jobid)
    r = run(inst, "uri", jobid, check=False)
    assert r.returncode == 1 and "is not running" in r.stderr


def test_uri_paths_parent_root_and_pid(inst):
    a = run(inst, "alloc", "--bg", "-n2").stdout.strip()
    env_a = child_env(inst, a)
    b = run(inst, "alloc", "--bg", "-n1", env=env_a).stdout.strip()
    b_uri = run(inst, "uri", "--local", b, env=env_a).stdout.strip()
    assert run(inst, "uri", "--local", f"{a}/{b}").stdout.strip() == b_uri
    assert run(inst, "uri", "--local", f"jobid:/{a}/{b}", env={"FLUX_URI": b_uri}).stdout.strip() \
        == b_uri
    assert run(inst, "uri", "/", env={"FLUX_URI": b_uri}).stdout.strip() == inst.uri
    assert run(inst, "uri", "--local", "..", env={"FLUX_URI": b_uri}).stdout.strip() \
        == env_a["FLUX_URI"]
    import flux

    pid = int(flux.Flux(b_uri).attr_get("broker.pid"))
    assert run(inst, "uri", f"pid:{pid}").stdout.strip() == b_uri
    r = run(inst, "uri", "bogus%", check=False)
    assert r.returncode == 1 and "not a valid jobid" in r.stderr
    r = run(inst, "uri", "--wait", "123", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    tree = run(inst, "pstree", "--ascii").stdout.splitlines()
    assert tree == [".", "`-- flux", "    `-- flux"]
    run(inst, "cancel", a)
    wait_clean(inst, a)


def test_ssh_uri_through_a_relay_command(inst, tmp_path):
    """ssh:// to another host runs $FLUX_SSH HOST flux relay PATH; a stand-in for ssh
    that runs the command here shows the path end to end (and FLUX_PROXY_REMOTE)."""
    fake_ssh = tmp_path / "fakessh"
    fake_ssh.write_text(f"#!/bin/sh\necho \"$1\" >> {tmp_path}/hosts\nshift\nexec \"$@\"\n")
    fake_ssh.chmod(0o755)
    path = inst.uri[len("local://"):]
    env = {"FLUX_SSH": str(fake_ssh), "FLUX_URI": f"ssh://otherhost{path}"}
    assert run(inst, "getattr", "instance-level", env=env).stdout.strip() == "0"
    r = run(inst, "proxy", f"ssh://otherhost{path}", "sh", "-c",
            "echo $FLUX_PROXY_REMOTE; flux getattr size", env={"FLUX_SSH": str(fake_ssh)})
    assert r.stdout.split() == ["otherhost", "1"]
    assert "otherhost" in (tmp_path / "hosts").read_text()


# ------------------------------------------------------------------ lifecycle
def test_cancel_shuts_the_child_down_and_leaves_nothing(inst, tmp_path):
    jobid = run(inst, "alloc", "--bg", "-n2").stdout.strip()
    env = child_env(inst, jobid)
    import flux

    child_pid = int(flux.Flux(env["FLUX_URI"]).attr_get("broker.pid"))
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)  # the job writes its pid into it: reading waits for exactly that
    run(inst, "submit", "sh", "-c", f"echo $$ > {fifo}; exec sleep 300", env=env)
    with open(fifo) as f:
        sleep_pid = int(f.read())
    below = descendants(child_pid)
    assert sleep_pid in below
    run(inst, "cancel", jobid)
    wait_clean(inst, jobid)
    info = job_info(inst, jobid)
    assert info["result"] == 4  # CANCELED
    for pid in below | {child_pid}:
        assert not alive(pid), f"pid {pid} of the canceled instance is still running"
    # the child canceled its own job on the way out (clean shutdown, not a kill)
    ev = run(inst, "job", "eventlog", "-p", "exec", jobid).stdout
    assert 'signaled=0' in ev and "exitcode=0" in ev


def test_a_dead_child_fails_its_job_with_an_exception(inst):
    jobid = run(inst, "alloc", "--bg", "-n1").stdout.strip()
    import flux

    env = child_env(inst, jobid)
    pid = int(flux.Flux(env["FLUX_URI"]).attr_get("broker.pid"))
    below = descendants(pid)
    os.kill(pid, signal.SIGKILL)
    wait_clean(inst, jobid)
    info = job_info(inst, jobid)
    assert info["result"] == 2  # FAILED
    assert info["exception_type"] == "exec"
    assert "child instance broker" in info["exception_note"]
    assert "SIGKILL" in info["exception_note"]
    wait_gone(below, 30)  # its shell server follows the broker out


@pytest.mark.slow
def test_depth_four_runs_a_job_at_the_bottom(inst):
    inner = ("flux getattr instance-level; flux run -n1 printenv FLUX_JOB_ID_PATH; "
             "flux uri /")
    cmd = ["alloc", "-n1"] * 1 + ["flux", "alloc", "-n1"] * 3 + ["sh", "-c", inner]
    r = run(inst, *cmd)
    level, path, root = r.stdout.split()
    assert level == "4"
    ids = [p for p in path.split("/") if p]
    assert len(ids) == 5  # four instances and the job at the bottom
    assert root == inst.uri
    assert run(inst, "jobs", "-a", "-no", "{result}").stdout.split() == ["COMPLETED"]


def test_alloc_interactive_on_a_terminal(inst):
    """On a terminal, flux alloc runs a shell on a pty in the child: the job's tty is
    a terminal, ^C interrupts the foreground command and not the instance, and the
    shell's exit code is flux alloc's."""
    import select
    import subprocess

    master, slave = os.openpty()

    def controlling_tty():
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = dict(inst.env, SHELL="/bin/sh", PS1="PROMPT$ ")
    from conftest import FLUX

    p = subprocess.Popen([FLUX, "alloc", "-n1"], stdin=slave, stdout=slave, stderr=slave,
                         env=env, start_new_session=True, preexec_fn=controlling_tty)
    os.close(slave)
    buf = bytearray()

    def read_until(pat: bytes, timeout: float = 60) -> None:
        end = time.time() + timeout
        while pat not in buf:
            r, _, _ = select.select([master], [], [], max(0.0, end - time.time()))
            assert r, f"timed out waiting for {pat!r}: {bytes(buf)!r}"
            try:
                buf.extend(os.read(master, 4096))
            except OSError:
                break
        assert pat in buf, bytes(buf)

    try:
        read_until(b"PROMPT$ ")
        os.write(master, b"tty; flux getattr instance-level; sleep 60; echo slept-$((1+1))\n")
        read_until(b"\n1\r\n")
        os.write(master, b"\x03")  # ^C: typed on our terminal, delivered in the job
        read_until(b"^C")
        os.write(master, b"echo after-$((3+4)); exit 7\n")
        read_until(b"after-7")
        assert p.wait(timeout=60) == 7
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    text = bytes(buf).decode(errors="replace")
    # ^C stopped `sleep 60` (else `exit 7` could not have run within the wait above);
    # whether the shell then drops the rest of that line is the shell's business, and
    # depends on whether ^C came before or after sleep started
    assert "/dev/pts/" in text


def test_each_child_has_its_own_queues_and_scheduler_settings(inst):
    """The parent grants, the child decides: a child configured with --conf has named
    queues (and a default one) that the parent does not, and its own scheduler."""
    inner = ("flux queue list -n; flux getattr sched.module; flux submit -n1 true >/dev/null;"
             " flux queue drain; flux jobs -a -no '{queue}'")
    r = run(inst, "alloc", "-n2", "--conf=queues.debug={}", "--conf=queues.batch={}",
            "--conf=policy.jobspec.defaults.system.queue=batch", "--conf=sched.module=simple",
            "sh", "-c", inner)
    lines = r.stdout.split("\n")
    assert [ln.split()[0] for ln in lines[:2]] == ["debug", "batch"]
    assert lines[2:4] == ["simple", "batch"]
    r = run(inst, "queue", "list", "-n")
    assert "debug" not in r.stdout and "batch" not in r.stdout


def test_batch_script_from_stdin_and_conf_text(inst):
    r = inst.flux("batch", "-n1", "--dry-run", input="#!/bin/sh\n# flux: -c2\nhostname\n")
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)
    assert js["attributes"]["system"]["job"]["name"] == "batch"
    assert js["resources"][0]["with"][0]["count"] == 2
    conf = '[sched-simple]\nqueue-depth = 8\n[resource]\nnoverify = true\n'
    r = inst.flux("batch", "-n1", "--dry-run", f"--conf={conf}", "--conf=x.y=[1, 2]",
                  "--wrap", "true")
    js = json.loads(r.stdout)
    files = js["attributes"]["system"]["files"]
    assert files["conf.json"]["data"] == {"sched-simple": {"queue-depth": 8},
                                          "resource": {"noverify": True}, "x": {"y": [1, 2]}}
    assert js["tasks"][0]["command"][:3] == ["flux", "broker", "-c{{tmpdir}}/conf.json"]


def test_child_takes_the_jobs_R_as_is_renumbered(make_instance):
    """The child's resources are its job's R, with the graph scheduler's JGF under
    `scheduling` kept for a graph scheduler in the child, and ranks renumbered from 0
    (the job got the parent's rank 1, node1)."""
    inst = make_instance(2, conf=['resource.config=[{hosts="node[0-1]", cores="0-3", '
                                  'gpus="0-1"}]', "sched.module=graph"],
                         extra=["--test-hosts=node[0-1]"])
    jobid = run(inst, "alloc", "--bg", "-N1", "-n1", "-c2", "-g1", "--requires=host:node1",
                "--conf=sched.module=graph").stdout.strip()
    R = json.loads(run(inst, "job", "info", jobid, "R").stdout)
    assert R["execution"]["R_lite"][0]["rank"] == "1"
    assert R.get("scheduling", {}).get("writer") == "fluxion:jgf"
    env = child_env(inst, jobid)
    import flux

    h = flux.Flux(env["FLUX_URI"])
    child_R = json.loads(run(inst, "kvs", "get", "resource.R", env=env).stdout)
    assert child_R["execution"]["R_lite"] == [{"rank": "0", "children": {"core": R[
        "execution"]["R_lite"][0]["children"]["core"], "gpu": R["execution"]["R_lite"][0][
        "children"]["gpu"]}}]
    assert child_R["execution"]["nodelist"] == ["node1"]
    assert h.attr_get("sched.module") == "graph"
    r = run(inst, "run", "-n1", "-c2", "-g1", "printenv", "CUDA_VISIBLE_DEVICES", env=env)
    assert r.stdout.strip() == R["execution"]["R_lite"][0]["children"]["gpu"]
    run(inst, "cancel", jobid)
    wait_clean(inst, jobid)


def test_rerank_renumbers_execution_properties_and_jgf():
    from flux.core.resource.parent import rerank

    R = {"version": 1, "execution": {
        "R_lite": [{"rank": "7", "children": {"core": "0-1"}},
                   {"rank": "3-4", "children": {"core": "2"}}],
        "nodelist": ["n[3-4,7]"], "properties": {"fast": "4,7"}, "nslots": 3,
        "starttime": 1.0, "expiration": 2.0},
        "scheduling": {"writer": "fluxion:jgf", "graph": {"nodes": [
            {"id": "0", "metadata": {"type": "cluster", "rank": -1}},
            {"id": "1", "metadata": {"type": "node", "rank": 7}},
            {"id": "2", "metadata": {"type": "node", "rank": 3}}], "edges": []}}}
    out = rerank(R)
    ex = out["execution"]
    assert [e["rank"] for e in ex["R_lite"]] == ["2", "0-1"]
    assert ex["properties"] == {"fast": "1-2"}
    assert "nslots" not in ex and ex["nodelist"] == ["n[3-4,7]"] and ex["expiration"] == 2.0
    ranks = [n["metadata"]["rank"] for n in out["scheduling"]["graph"]["nodes"]]
    assert ranks == [-1, 2, 0]
    assert R["execution"]["R_lite"][0]["rank"] == "7"  # the input is not changed
