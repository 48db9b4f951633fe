"""Real jobs end to end: exec's ShellLauncher, the per-rank shell server, the job shell.

Jobs are submitted through job-ingest (waitable) and followed through the KVS and
job-info, without the submission CLI.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import time

import flux
import orjson
import pytest
from flux.core.job.fluid import encode_f58, encode_f58plain, encode_kvs
from flux.core.security.sign import wrap_none
from flux.job import JobspecV1

WAITABLE = 4


class Jobs:
    """Submit jobs to an instance and read what they left in the KVS."""

    def __init__(self, inst):
        self.inst = inst
        self.h = inst.handle()

    def spec(self, cmd, ntasks=1, nodes=None, cores=1, gpus=None, options=None,
             duration=None, cwd=None, env=None) -> dict:
        js = JobspecV1.from_command(list(cmd), num_tasks=ntasks, cores_per_task=cores,
                                    gpus_per_task=gpus, num_nodes=nodes,
                                    duration=duration, cwd=cwd or os.getcwd(),
                                    environment=env if env is not None else dict(os.environ))
        d = js.to_dict()
        for k, v in (options or {}).items():
            d["attributes"]["system"].setdefault("shell", {}).setdefault("options", {})[k] = v
        return d

    def submit(self, cmd, **kw) -> int:
        J = wrap_none(orjson.dumps(self.spec(cmd, **kw)), os.getuid())
        return self.h.rpc("job-ingest.submit", {"J": J, "urgency": 16, "flags": WAITABLE}).get()["id"]

    def wait(self, jobid: int) -> dict:
        return self.h.rpc("job-manager.wait", {"id": jobid}).get()

    def run(self, cmd, **kw) -> int:
        jobid = self.submit(cmd, **kw)
        self.wait(jobid)
        return jobid

    def lookup(self, key: str, namespace: str = "primary", flags: int = 0):
        return self.h.rpc("kvs.lookup", {"key": key, "namespace": namespace, "flags": flags}).get()

    def raw(self, jobid: int, key: str) -> bytes:
        return base64.b64decode(self.lookup(f"{encode_kvs(jobid)}.{key}")["val"]["data"])

    def events(self, jobid: int, key: str = "eventlog") -> list[dict]:
        if key == "eventlog":  # from job-info: the job manager's batched KVS write may lag
            text = self.h.rpc("job-info.lookup", {"id": jobid, "keys": ["eventlog"],
                                                  "flags": 0}).get()["eventlog"]
            return [orjson.loads(line) for line in text.splitlines()]
        return [orjson.loads(line) for line in self.raw(jobid, key).splitlines()]

    def names(self, jobid: int, key: str = "eventlog") -> list[str]:
        return [e["name"] for e in self.events(jobid, key)]

    def event(self, jobid: int, name: str, key: str = "eventlog") -> dict:
        for e in self.events(jobid, key):
            if e["name"] == name:
                return e.get("context", {})
        raise AssertionError(f"no {name} event in {key}: {self.names(jobid, key)}")

    def output(self, jobid: int, stream: str = "stdout") -> dict[str, bytes]:
        """Task rank -> everything it wrote on `stream`."""
        out: dict[str, bytes] = {}
        for e in self.events(jobid, "guest.output"):
            c = e.get("context", {})
            if e["name"] == "data" and c.get("stream") == stream and "data" in c:
                data = c["data"].encode()
                if c.get("encoding") == "base64":
                    data = base64.b64decode(data)
                out[c["rank"]] = out.get(c["rank"], b"") + data
        return out

    def wait_output(self, jobid: int, text: str) -> None:
        """Follow the output eventlog (job-info) until a task has written `text`."""
        f = self.h.rpc("job-info.eventlog-watch", {"id": jobid, "path": "guest.output",
                                                   "flags": 1}, flags=flux.handle.RPC_STREAMING)
        seen = ""
        try:
            while text not in seen:
                e = orjson.loads(f.get()["event"])
                f.reset()
                seen += e.get("context", {}).get("data", "")
        finally:
            f.cancel()

    def wait_exec_event(self, jobid: int, name: str) -> dict:
        """Follow the exec eventlog (job-info) until `name` is posted."""
        f = self.h.rpc("job-info.eventlog-watch", {"id": jobid, "path": "guest.exec.eventlog",
                                                   "flags": 1}, flags=flux.handle.RPC_STREAMING)
        try:
            while True:
                e = orjson.loads(f.get()["event"])
                f.reset()
                if e["name"] == name:
                    return e.get("context", {})
        finally:
            f.cancel()


def cores_conf(n: int, hosts: str | None = None) -> str:
    return f'resource.config=[{{hosts="{hosts or socket.gethostname()}", cores="0-{n - 1}"}}]'


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(1, conf=[cores_conf(8)])
    yield i
    i.stop()


@pytest.fixture
def jobs(inst):
    return Jobs(inst)


# ----------------------------------------------------------------- basics
def test_true_job_eventlogs_and_guest_directory(jobs):
    jobid = jobs.submit(["true"])
    assert jobs.wait(jobid)["success"] is True
    order = ["alloc", "start", "finish", "release", "free", "clean"]
    assert [n for n in jobs.names(jobid) if n in order] == order
    assert jobs.event(jobid, "finish") == {"status": 0}
    ex = jobs.names(jobid, "guest.exec.eventlog")
    assert ex == ["init", "starting", "shell.init", "shell.start", "shell.task-exit",
                  "complete", "done"]
    init = jobs.event(jobid, "shell.init", "guest.exec.eventlog")
    assert init == {"leader-rank": 0, "size": 1,
                    "service": f"{os.getuid()}-shell-{encode_f58plain(jobid)}"}
    assert jobs.event(jobid, "shell.start", "guest.exec.eventlog") == {
        "taskmap": {"version": 1, "map": [[0, 1, 1, 1]]}}
    texit = jobs.event(jobid, "shell.task-exit", "guest.exec.eventlog")
    assert texit["rank"] == 0 and texit["exitcode"] == 0 and texit["pid"] > 0
    assert jobs.event(jobid, "complete", "guest.exec.eventlog") == {"status": 0}
    # the output eventlog: header first, then an eof per stream
    out = jobs.events(jobid, "guest.output")
    assert out[0]["name"] == "header"
    assert out[0]["context"]["count"] == {"stdout": 1, "stderr": 1}
    eofs = {e["context"]["stream"] for e in out if e["context"].get("eof")}
    assert eofs == {"stdout", "stderr"}
    assert jobs.events(jobid, "guest.input")[0]["name"] == "header"
    # the namespace was copied to a real directory and removed
    listing = jobs.lookup(f"{encode_kvs(jobid)}.guest", flags=1)["val"]
    assert listing["type"] == "dir"
    spaces = [n["namespace"] for n in jobs.h.rpc("kvs.namespace-list", {}).get()["namespaces"]]
    assert f"job-{jobid}" not in spaces


def test_guest_is_a_symlink_to_the_job_namespace_while_running(jobs):
    jobid = jobs.submit(["sleep", "30"])
    jobs.wait_exec_event(jobid, "shell.start")
    link = jobs.lookup(f"{encode_kvs(jobid)}.guest", flags=2)["val"]
    assert link["type"] == "symlink"
    assert link["data"] == {"namespace": f"job-{jobid}", "target": "."}
    owner = {n["namespace"]: n["owner"]
             for n in jobs.h.rpc("kvs.namespace-list", {}).get()["namespaces"]}
    assert owner[f"job-{jobid}"] == os.getuid()
    jobs.h.rpc("job-manager.raise", {"id": jobid, "severity": 0, "type": "cancel",
                                     "note": "done"}).get()
    assert jobs.wait(jobid)["success"] is False


def test_task_environment_and_cwd(jobs, inst, tmp_path):
    jobid = jobs.run(["sh", "-c", "env; pwd"], cwd=str(tmp_path), env={
        "PATH": os.environ["PATH"], "MYVAR": "hello", "FLUX_PROXY_REMOTE": "x"})
    text = jobs.output(jobid)["0"].decode()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert env["FLUX_JOB_ID"] == encode_f58(jobid)
    assert env["FLUX_JOB_ID_PATH"] == "/" + encode_f58(jobid)
    assert env["FLUX_JOB_SIZE"] == "1" and env["FLUX_JOB_NNODES"] == "1"
    assert env["FLUX_TASK_RANK"] == "0" and env["FLUX_TASK_LOCAL_ID"] == "0"
    assert env["FLUX_KVS_NAMESPACE"] == f"job-{jobid}"
    assert env["FLUX_URI"] == jobs.h.attr_get("local-uri")
    assert env["MYVAR"] == "hello" and "FLUX_PROXY_REMOTE" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "-1"
    tmpdir = env["FLUX_JOB_TMPDIR"]
    assert f"jobtmp-0-{encode_f58(jobid)}" in tmpdir and not os.path.exists(tmpdir)
    assert text.splitlines()[-1] == str(tmp_path)


def test_exit_code_is_the_largest_task_exit_code(jobs):
    jobid = jobs.submit(["sh", "-c", "exit $((FLUX_TASK_RANK + 2))"], ntasks=3)
    r = jobs.wait(jobid)
    assert jobs.event(jobid, "finish") == {"status": 4 << 8}
    assert r["success"] is False and "exit code 4" in r["errstr"]


def test_task_killed_by_signal_counts_128_plus_signo(jobs):
    jobid = jobs.run(["sh", "-c", "kill -9 $$"])
    assert jobs.event(jobid, "finish") == {"status": (128 + 9) << 8}
    texit = jobs.event(jobid, "shell.task-exit", "guest.exec.eventlog")
    assert texit["signaled"] == 9 and texit["exitcode"] == 137


def test_missing_command_fails_the_job_and_the_instance_carries_on(jobs):
    jobid = jobs.run(["nosuchcmd-xyz"])
    exc = jobs.event(jobid, "exception")
    assert exc["type"] == "exec" and exc["severity"] == 0
    host = jobs.h.attr_get("hostname")
    assert exc["note"] == (f"task 0 (host {host}): start failed: nosuchcmd-xyz: "
                           "No such file or directory")
    assert jobs.event(jobid, "finish") == {"status": 127 << 8}
    assert "start" not in jobs.names(jobid)
    again = jobs.run(["true"])
    assert jobs.event(again, "finish") == {"status": 0}


def test_not_executable_is_126(jobs, tmp_path):
    f = tmp_path / "script.sh"
    f.write_text("#!/bin/sh\n")
    jobid = jobs.run([str(f)])
    assert jobs.event(jobid, "finish") == {"status": 126 << 8}
    assert "Permission denied" in jobs.event(jobid, "exception")["note"]


def test_bad_layout_fails_at_start_with_a_clear_exception(jobs):
    spec = jobs.spec(["true"])
    spec["attributes"]["system"]["shell"] = {"options": {"taskmap": {"scheme": "bogus"}}}
    J = wrap_none(orjson.dumps(spec), os.getuid())
    jobid = jobs.h.rpc("job-ingest.submit", {"J": J, "urgency": 16, "flags": WAITABLE}).get()["id"]
    jobs.wait(jobid)
    exc = jobs.event(jobid, "exception")
    assert exc["type"] == "start" and "taskmap scheme 'bogus' is not supported" in exc["note"]


# ------------------------------------------------------------------ output
def test_stdout_stderr_and_binary_output(jobs):
    jobid = jobs.run(["sh", "-c", "printf 'a\\nb\\n'; printf 'oops\\n' >&2; printf '\\377\\376'"])
    assert jobs.output(jobid)["0"] == b"a\nb\n\xff\xfe"
    assert jobs.output(jobid, "stderr")["0"] == b"oops\n"


def test_ten_megabytes_of_output_arrive_intact(jobs):
    n = 10 * 1000 * 1000
    script = ("import sys\n"
              "line = b''.join(bytes([65 + (i % 26)]) for i in range(99)) + b'\\n'\n"
              f"sys.stdout.buffer.write(line * ({n} // 100))\n")
    t0 = time.time()
    jobid = jobs.run([os.environ.get("PYTHON", "python3"), "-c", script])
    assert jobs.event(jobid, "finish") == {"status": 0}
    data = jobs.output(jobid)["0"]
    line = bytes(65 + (i % 26) for i in range(99)) + b"\n"
    assert len(data) == n and data == line * (n // 100)
    assert time.time() - t0 < 60


def test_output_to_files_with_templates(jobs, tmp_path):
    opts = {"output": {"stdout": {"type": "file", "path": "out-{{id}}.txt"},
                       "stderr": {"type": "file", "path": str(tmp_path / "err-{{taskid}}.txt"),
                                  "label": True}}}
    jobid = jobs.run(["sh", "-c", "echo to-out; echo to-err >&2"], ntasks=2, cwd=str(tmp_path),
                     options=opts)
    assert jobs.event(jobid, "finish") == {"status": 0}
    out = (tmp_path / f"out-{encode_f58(jobid)}.txt").read_text()
    assert out == "to-out\nto-out\n"
    assert (tmp_path / "err-0.txt").read_text() == "0: to-err\n"
    assert (tmp_path / "err-1.txt").read_text() == "1: to-err\n"
    redirects = [e["context"] for e in jobs.events(jobid, "guest.output") if e["name"] == "redirect"]
    assert {"stream": "stdout", "rank": "0-1",
            "path": str(tmp_path / f"out-{encode_f58(jobid)}.txt")} in redirects
    assert jobs.output(jobid) == {}  # nothing went to the KVS
    eofs = [(e["context"]["stream"], e["context"]["rank"]) for e in jobs.events(jobid, "guest.output")
            if e["context"].get("eof")]
    assert sorted(eofs) == [("stderr", "0"), ("stderr", "1"), ("stdout", "0"), ("stdout", "1")]


def test_stdin_from_a_file_and_from_the_shell_service(jobs, tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("from a file\n")
    jobid = jobs.run(["cat"], options={"input": {"stdin": {"type": "file", "path": str(f)}}})
    assert jobs.output(jobid)["0"] == b"from a file\n"
    jobid = jobs.submit(["cat"])
    jobs.wait_exec_event(jobid, "shell.init")
    svc = f"{os.getuid()}-shell-{encode_f58plain(jobid)}"
    jobs.h.rpc(f"{svc}.stdin", {"stream": "stdin", "rank": "all", "data": "typed\n"}).get()
    jobs.h.rpc(f"{svc}.stdin", {"stream": "stdin", "rank": "all", "eof": True}).get()
    jobs.wait(jobid)
    assert jobs.output(jobid)["0"] == b"typed\n"
    data = [e["context"] for e in jobs.events(jobid, "guest.input") if e["name"] == "data"]
    assert data[0]["data"] == "typed\n" and data[-1]["eof"] is True


# ----------------------------------------------------------- signals, time
def test_kill_delivers_the_signal(jobs):
    jobid = jobs.submit(["sh", "-c", "trap 'echo got-usr1; exit 7' USR1; echo ready; "
                                     "while true; do sleep 0.05; done"],
                        options={"output": {"batch-timeout": 0.01}})
    jobs.wait_output(jobid, "ready")
    jobs.h.rpc("job-manager.kill", {"id": jobid, "signum": signal.SIGUSR1}).get()
    jobs.wait(jobid)
    assert jobs.output(jobid)["0"] == b"ready\ngot-usr1\n"
    assert jobs.event(jobid, "finish") == {"status": 7 << 8}


def test_cancel_terminates_the_tasks(jobs):
    jobid = jobs.submit(["sleep", "60"])
    jobs.wait_exec_event(jobid, "shell.start")
    jobs.h.rpc("job-manager.raise", {"id": jobid, "severity": 0, "type": "cancel",
                                     "note": "stop"}).get()
    jobs.wait(jobid)
    assert jobs.event(jobid, "finish") == {"status": (128 + signal.SIGTERM) << 8}


def test_time_limit_raises_timeout_and_stops_the_job(jobs):
    t0 = time.time()
    jobid = jobs.run(["sleep", "60"], duration=1)
    assert time.time() - t0 < 30
    exc = jobs.event(jobid, "exception")
    assert exc["type"] == "timeout"
    assert jobs.event(jobid, "finish") == {"status": (128 + signal.SIGALRM) << 8}


def test_exit_timeout_after_first_task_exit(jobs):
    jobid = jobs.run(["sh", "-c", 'test "$FLUX_TASK_RANK" = 0 || sleep 60'], ntasks=2,
                     options={"exit-timeout": 0.5})
    exc = jobs.event(jobid, "exception")
    assert exc["type"] == "exec" and exc["note"] == "0.5s timeout after first task exit"
    texit = jobs.event(jobid, "shell.task-exit", "guest.exec.eventlog")
    assert texit["rank"] == 0 and texit["exitcode"] == 0


def test_signal_option_warns_before_the_time_limit(jobs):
    jobid = jobs.run(["sh", "-c", "trap 'echo warned; exit 0' USR1; sleep 30 & wait"],
                     duration=3, options={"signal": {"signum": signal.SIGUSR1, "timeleft": 2}})
    assert jobs.output(jobid)["0"] == b"warned\n"
    assert jobs.event(jobid, "finish") == {"status": 0}


# --------------------------------------------------------------- affinity
def test_cpu_affinity_binds_to_the_core_of_R(make_instance):
    inst = make_instance(1)  # discovered cores: this machine's CPUs
    jobs = Jobs(inst)
    ncpu = len(os.sched_getaffinity(0))
    show = ["python3", "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    jobid = jobs.run(show)
    R = orjson.loads(jobs.raw(jobid, "R"))
    core = int(R["execution"]["R_lite"][0]["children"]["core"])
    assert jobs.output(jobid)["0"] == f"[{core}]\n".encode()
    jobid = jobs.run(show, options={"cpu-affinity": "off"})
    assert jobs.output(jobid)["0"] == f"{sorted(os.sched_getaffinity(0))}\n".encode()
    if ncpu >= 2:
        jobid = jobs.run(show, ntasks=2, options={"cpu-affinity": "per-task"})
        outs = {k: v.decode().strip() for k, v in jobs.output(jobid).items()}
        assert len(set(outs.values())) == 2


def test_gpu_binding_from_R(make_instance):
    host = socket.gethostname()
    inst = make_instance(1, conf=[f'resource.config=[{{hosts="{host}", cores="0-3", gpus="0-1"}}]'])
    jobs = Jobs(inst)
    jobid = jobs.run(["sh", "-c", "echo $CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER"], gpus=1)
    R = orjson.loads(jobs.raw(jobid, "R"))
    gpu = R["execution"]["R_lite"][0]["children"]["gpu"]
    assert jobs.output(jobid)["0"] == f"{gpu} PCI_BUS_ID\n".encode()


# --------------------------------------------------------------- multi-rank
def test_job_spanning_two_ranks(make_instance):
    inst = make_instance(2)
    jobs = Jobs(inst)
    jobid = jobs.run(["sh", "-c", 'echo "$FLUX_TASK_RANK $FLUX_JOB_SIZE $FLUX_JOB_NNODES"; '
                                  "exit $FLUX_TASK_RANK"], ntasks=4, nodes=2)
    assert jobs.event(jobid, "finish") == {"status": 3 << 8}
    out = {k: v.decode() for k, v in jobs.output(jobid).items()}
    assert out == {str(r): f"{r} 4 2\n" for r in range(4)}
    assert jobs.event(jobid, "shell.init", "guest.exec.eventlog")["size"] == 2
    assert jobs.event(jobid, "shell.start", "guest.exec.eventlog")["taskmap"]["map"] == [[0, 2, 2, 1]]
    stats = [jobs.h.rpc("job-shell.stats", {}, nodeid=r).get() for r in (0, 1)]
    assert all(s["server-pid"] > 0 for s in stats) and stats[0]["server-pid"] != stats[1]["server-pid"]
    # stdin sent to the leader's service reaches the tasks of both ranks
    jobid = jobs.submit(["cat"], ntasks=2, nodes=2)
    jobs.wait_exec_event(jobid, "shell.init")
    svc = f"{os.getuid()}-shell-{encode_f58plain(jobid)}"
    jobs.h.rpc(f"{svc}.stdin", {"stream": "stdin", "rank": "all", "data": "both\n",
                                "eof": True}).get()
    jobs.wait(jobid)
    assert jobs.output(jobid) == {"0": b"both\n", "1": b"both\n"}


# ----------------------------------------------------------- shell server
def test_lost_shell_server_fails_the_job_and_a_new_one_starts(make_instance):
    inst = make_instance(1)
    jobs = Jobs(inst)
    jobid = jobs.submit(["sleep", "60"])
    jobs.wait_exec_event(jobid, "shell.start")
    pid = jobs.h.rpc("job-shell.stats", {}).get()["server-pid"]
    os.kill(pid, signal.SIGKILL)
    jobs.wait(jobid)
    exc = jobs.event(jobid, "exception")
    assert exc["type"] == "exec" and "lost contact with job shell on broker rank 0" in exc["note"]
    again = jobs.run(["true"])
    assert jobs.event(again, "finish") == {"status": 0}
    assert jobs.h.rpc("job-shell.stats", {}).get()["servers-started"] == 2


def test_job_shell_requests_are_owner_only_and_checked(jobs):
    with pytest.raises(OSError) as ei:
        jobs.h.rpc("job-shell.kill", {"id": 12345, "signum": 15}).get()
    assert "no shell" in str(ei.value)
    with pytest.raises(OSError) as ei:
        jobs.h.rpc("job-shell.kill", {"id": 12345, "signum": 99}).get()
    assert ei.value.errno in (2, 22)


# ------------------------------------------------------------- standalone
def test_standalone_flux_shell_runs_a_job_from_the_kvs(inst, tmp_path):
    """`flux-shell ID` reads jobspec and R from the KVS, writes the guest namespace and
    exits with the largest task exit code."""
    import subprocess
    import sys

    jobs = Jobs(inst)
    jobid = 0x1234
    d = encode_kvs(jobid)
    spec = jobs.spec(["sh", "-c", "echo standalone $FLUX_TASK_RANK; exit 5"], ntasks=2)
    R = {"version": 1, "execution": {"R_lite": [{"rank": "0", "children": {"core": "0-1"}}],
                                     "starttime": 0, "expiration": 0}}

    def val(obj):
        return {"ver": 1, "type": "val", "data": base64.b64encode(orjson.dumps(obj)).decode()}

    jobs.h.rpc("kvs.commit", {"namespace": "primary", "flags": 0, "ops": [
        {"key": f"{d}.jobspec", "flags": 0, "dirent": val(spec)},
        {"key": f"{d}.R", "flags": 0, "dirent": val(R)}]}).get()
    jobs.h.rpc("kvs.namespace-create", {"namespace": f"job-{jobid}", "owner": os.getuid(),
                                        "flags": 0}).get()
    try:
        r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "flux-shell"), str(jobid)],
                           env=dict(inst.env), capture_output=True, text=True, timeout=60)
        assert r.returncode == 5, r.stderr
        ns = f"job-{jobid}"
        out = base64.b64decode(jobs.lookup("output", ns)["val"]["data"]).decode()
        events = [orjson.loads(line) for line in out.splitlines()]
        assert events[0]["name"] == "header"
        text = sorted(e["context"]["data"] for e in events if "data" in e["context"])
        assert text == ["standalone 0\n", "standalone 1\n"]
        ex = base64.b64decode(jobs.lookup("exec.eventlog", ns)["val"]["data"]).decode()
        assert [orjson.loads(line)["name"] for line in ex.splitlines()] == ["shell.init", "shell.start"]
    finally:
        jobs.h.rpc("kvs.namespace-remove", {"namespace": f"job-{jobid}"}).get()


def test_standalone_flux_shell_errors(inst):
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "flux-shell")
    r = subprocess.run([exe, "not-a-jobid"], env=dict(inst.env), capture_output=True, text=True)
    assert r.returncode == 1 and "flux-shell:" in r.stderr
    env = {k: v for k, v in inst.env.items() if k != "FLUX_URI"}
    r = subprocess.run([exe, "1"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "FLUX_URI is not set" in r.stderr


# ------------------------------------------------------------- throughput
@pytest.mark.slow
def test_throughput_and_latency_of_true_jobs(make_instance, capsys):
    """200 `true` jobs on 32 declared cores, and one job end to end (reported)."""
    inst = make_instance(1, conf=[cores_conf(32)])
    jobs = Jobs(inst)
    J = wrap_none(orjson.dumps(jobs.spec(["true"])), os.getuid())
    jobs.run(["true"])  # the shell server is started on first need
    lat = []
    for _ in range(10):
        t0 = time.perf_counter()
        jobs.run(["true"])
        lat.append(time.perf_counter() - t0)
    n = 200
    t0 = time.perf_counter()
    r = jobs.h.rpc("job-ingest.submit", {"jobs": [{"J": J, "urgency": 16, "flags": 0}] * n}).get()
    assert all("id" in j for j in r["jobs"])
    jobs.h.rpc("job-manager.drain", {}).get()
    rate = n / (time.perf_counter() - t0)
    with capsys.disabled():
        print(f"\n  real exec: {rate:.0f} jobs/s for {n} `true` jobs; "
              f"one job end to end {sorted(lat)[len(lat) // 2] * 1000:.1f} ms (median of 10)")
    # (speed targets are bench/jobs_throughput.py's; here: every job ran and succeeded)
    assert all(jobs.h.rpc("job-list.list-id", {"id": j["id"], "attrs": ["result"]}).get()
               ["job"]["result"] == 1 for j in r["jobs"])


def test_rlimit_and_nosetpgrp_options(jobs):
    jobid = jobs.run(["sh", "-c", "ulimit -n; ps -o pgid= -p $$; echo $$"],
                     options={"rlimit": {"nofile": 100}, "nosetpgrp": 1})
    limit, pgid, pid = jobs.output(jobid)["0"].decode().split()
    assert limit == "100" and pgid != pid  # not the leader of its own group
    jobid = jobs.run(["sh", "-c", "ps -o pgid= -p $$; echo $$"])
    pgid, pid = jobs.output(jobid)["0"].decode().split()
    assert pgid == pid
    jobid = jobs.run(["true"], options={"rlimit": {"bogus": 1}})
    assert "unknown resource limit 'bogus'" in jobs.event(jobid, "exception")["note"]


def test_exit_on_error_stops_the_other_tasks(jobs):
    t0 = time.time()
    jobid = jobs.run(["sh", "-c", 'test "$FLUX_TASK_RANK" = 1 && exit 3; sleep 60'], ntasks=2,
                     options={"exit-on-error": 1})
    assert time.time() - t0 < 30
    exc = jobs.event(jobid, "exception")
    assert exc["type"] == "exec" and "task 1" in exc["note"] and "exit code 3" in exc["note"]
    assert jobs.event(jobid, "finish")["status"] != 0
