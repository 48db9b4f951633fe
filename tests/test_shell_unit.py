"""Job shell pieces that need no broker: task layout, templates, output encoding,
affinity and GPU binding, task start errors, the plugin stack."""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import stat

import orjson
import pytest
from flux.shell import mustache
from flux.shell.info import JobInfo, ShellInfoError, parse_jobspec
from flux.shell.output import _utf8_cut, entry, header, io_context, parse_size
from flux.shell.plugin import PluginFailed, PluginStack
from flux.shell.plugins import affinity, gpubind
from flux.shell.task import TaskStartError, resolve


def spec(ntasks=1, cores=1, nodes=None, total=None, gpus=0, cmd=("true",), options=None):
    slot_with = [{"type": "core", "count": cores}]
    if gpus:
        slot_with.append({"type": "gpu", "count": gpus})
    per_node = -(-ntasks // nodes) if nodes else ntasks
    slot = {"type": "slot", "count": per_node, "label": "task", "with": slot_with}
    res = [{"type": "node", "count": nodes, "with": [slot]}] if nodes else [slot]
    count = {"total": total} if total else {"per_slot": 1}
    system = {"duration": 0}
    if options:
        system["shell"] = {"options": options}
    return {"version": 1, "resources": res,
            "tasks": [{"command": list(cmd), "slot": "task", "count": count}],
            "attributes": {"system": system}}


def R(ranks: dict[int, str], gpus: dict[int, str] | None = None, hosts=None):
    lite = []
    for r, cores in ranks.items():
        children = {"core": cores}
        if gpus and r in gpus:
            children["gpu"] = gpus[r]
        lite.append({"rank": str(r), "children": children})
    ex = {"R_lite": lite, "starttime": 0, "expiration": 0}
    if hosts:
        ex["nodelist"] = hosts
    return {"version": 1, "execution": ex}


# ------------------------------------------------------------------ layout
def test_one_task_one_rank():
    info = JobInfo(1, spec(), R({0: "3"}))
    assert info.ntasks == 1 and info.nnodes == 1
    assert info.ranks[0].taskids == [0] and info.ranks[0].cores == [3]
    assert info.taskmap.to_dict() == {"version": 1, "map": [[0, 1, 1, 1]]}


def test_block_layout_over_two_ranks():
    info = JobInfo(1, spec(ntasks=4, nodes=2), R({0: "0-1", 5: "0-1"}))
    assert [r.rank for r in info.ranks] == [0, 5]
    assert info.ranks[0].taskids == [0, 1] and info.ranks[1].taskids == [2, 3]
    assert info.taskmap.to_list() == [[0, 2, 2, 1]]
    assert info.rank_info(5).nodeid == 1


def test_uneven_total_largest_rank_first():
    # 3 tasks on 2x2 cores: one core a task, dealt rank by rank
    info = JobInfo(1, spec(ntasks=3, nodes=2, total=3), R({0: "0-1", 1: "0-1"}))
    assert [r.ntasks for r in info.ranks] == [2, 1]
    # a bigger rank takes more
    info = JobInfo(1, spec(ntasks=4, cores=2), R({0: "0-5", 1: "0-1"}))
    assert [r.ntasks for r in info.ranks] == [3, 1]


def test_cyclic_and_manual_taskmaps():
    js = spec(ntasks=4, nodes=2, options={"taskmap": {"scheme": "cyclic", "value": ""}})
    info = JobInfo(1, js, R({0: "0-1", 1: "0-1"}))
    assert info.ranks[0].taskids == [0, 2] and info.ranks[1].taskids == [1, 3]
    js = spec(ntasks=4, nodes=2, options={"taskmap": {"scheme": "manual",
                                                      "value": "[[1,1,2,1],[0,1,2,1]]"}})
    info = JobInfo(1, js, R({0: "0-1", 1: "0-1"}))
    assert info.ranks[0].taskids == [2, 3] and info.ranks[1].taskids == [0, 1]
    bad = spec(ntasks=4, nodes=2, options={"taskmap": {"scheme": "manual", "value": "[[0,1,4,1]]"}})
    with pytest.raises(ShellInfoError, match="taskmap manual"):
        JobInfo(1, bad, R({0: "0-1", 1: "0-1"}))
    with pytest.raises(ShellInfoError, match="not supported"):
        JobInfo(1, spec(options={"taskmap": {"scheme": "hostfile"}}), R({0: "0"}))


def test_per_resource_option():
    info = JobInfo(1, spec(options={"per-resource": {"type": "core", "count": 2}}),
                   R({0: "0-2", 1: "4"}))
    assert [r.ntasks for r in info.ranks] == [6, 2] and info.ntasks == 8
    info = JobInfo(1, spec(options={"per-resource": {"type": "node", "count": 3}}),
                   R({0: "0-2", 1: "4"}))
    assert [r.ntasks for r in info.ranks] == [3, 3]
    with pytest.raises(ShellInfoError, match="per-resource.type"):
        JobInfo(1, spec(options={"per-resource": {"type": "gpu"}}), R({0: "0"}))


@pytest.mark.parametrize("mutate, match", [
    (lambda js: js.update(version=2), "version must be 1"),
    (lambda js: js["tasks"][0].update(command=[]), "command"),
    (lambda js: js["tasks"][0].update(count={"per_slot": 2}), "per_slot"),
    (lambda js: js["resources"][0]["with"].pop(0), "core"),
    (lambda js: js["attributes"]["system"].update(environment=[]), "environment"),
])
def test_bad_jobspecs_are_named(mutate, match):
    js = spec()
    mutate(js)
    with pytest.raises(ShellInfoError, match=match):
        parse_jobspec(js)


def test_more_tasks_than_cores_and_missing_rank():
    with pytest.raises(ShellInfoError, match="more tasks than cores"):
        JobInfo(1, spec(ntasks=3, total=3), R({0: "0-1"}))
    info = JobInfo(1, spec(), R({0: "0"}))
    with pytest.raises(ShellInfoError, match="broker rank 7 is not in the job's R"):
        info.rank_info(7)
    with pytest.raises(ShellInfoError, match="R"):
        JobInfo(1, spec(), {"version": 1, "execution": {"R_lite": [{"rank": "x"}]}})


# --------------------------------------------------------------- templates
class FakeTask:
    def __init__(self, rank, localid=0):
        self.rank, self.localid = rank, localid
        self.env: dict = {}
        self.cpus = None

    def setenv(self, k, v, overwrite=True):
        if overwrite or k not in self.env:
            self.env[k] = v


class FakeShell:
    def __init__(self, jobspec=None, Rd=None, broker_rank=0, tmpdir="/tmp/x"):
        self.jobid = 1234567
        self.info = JobInfo(self.jobid, jobspec or spec(cmd=("app", "x")), Rd or R({0: "0-3"}))
        self.rankinfo = self.info.rank_info(broker_rank)
        self.options = self.info.options
        self.tmpdir = tmpdir
        self.tasks = [FakeTask(r, i) for i, r in enumerate(self.rankinfo.taskids)]
        self.env: dict = {}
        self.aux: dict = {}
        self.logs: list = []

        class Host:
            class spawner:
                own_cpus = {0, 1, 2, 3}

        self.host = Host

    def getopt(self, k, d=None):
        return self.options.get(k, d)

    def setenv(self, k, v, overwrite=True):
        if overwrite or k not in self.env:
            self.env[k] = v

    def log(self, level, msg, component=None):
        self.logs.append(msg)


def test_mustache_tags():
    sh = FakeShell()
    t = sh.tasks[0]
    assert mustache.render("flux-{{id}}.out", sh) == "flux-ƒ7h3k.out".replace(
        "ƒ7h3k", mustache.lookup("id.f58", sh))
    assert mustache.render("{{id.dec}}-{{name}}-{{size}}-{{nnodes}}", sh) == "1234567-app-1-1"
    assert mustache.render("{{jobid.hex}}", sh) == hex(1234567)
    assert mustache.render("{{node.id}}/{{node.cores}}/{{node.ncores}}", sh) == "0/0-3/4"
    assert mustache.render("{{taskid}}.{{task.localid}}", sh, t) == "0.0"
    assert mustache.render("{{tmpdir}}/{{bogus}}", sh) == "/tmp/x/{{bogus}}"
    assert mustache.render("{{taskid}}", sh) == "{{taskid}}"  # no task here: left as written
    assert mustache.has_task_tags("a{{task.id}}") and not mustache.has_task_tags("{{id}}")


# ------------------------------------------------------------------ output
def test_output_encoding():
    assert io_context("stdout", "0", b"hi\n") == {"stream": "stdout", "rank": "0", "data": "hi\n"}
    ctx = io_context("stderr", "3", b"\xff\xfe", eof=True)
    assert ctx["encoding"] == "base64" and base64.b64decode(ctx["data"]) == b"\xff\xfe"
    assert ctx["eof"] is True
    e = orjson.loads(entry("data", {"a": 1}, 5.0))
    assert e == {"timestamp": 5.0, "name": "data", "context": {"a": 1}}
    h = header(4)
    assert h["count"] == {"stdout": 4, "stderr": 4} and h["version"] == 1


def test_utf8_cut_keeps_split_characters_for_later():
    s = "aé€😀".encode()
    assert _utf8_cut(s) == len(s)
    assert _utf8_cut(s[:-1]) == len(s) - 4  # 4-byte emoji cut short: held back
    assert _utf8_cut(s[:-5]) == len(s) - 7  # inside the euro sign
    assert _utf8_cut(b"") == 0


def test_parse_size():
    assert parse_size("10M", "x") == 10 << 20 and parse_size("1.5K", "x") == 1536
    assert parse_size(100, "x") == 100
    with pytest.raises(ValueError, match="output.limit"):
        parse_size("lots", "output.limit")


# ------------------------------------------------------------- affinity/gpu
def test_affinity_options():
    assert affinity.parse(None) == ("on", False, False)
    assert affinity.parse("verbose,dry-run,per-task") == ("per-task", True, True)
    with pytest.raises(ValueError, match="cpu-affinity=sideways"):
        affinity.parse("sideways")
    assert affinity.split([0, 1, 2, 3], 2) == [{0, 1}, {2, 3}]
    assert affinity.split([5], 3) == [{5}, {5}, {5}]


def test_affinity_binds_to_the_cores_of_R_this_node_has():
    sh = FakeShell(spec(ntasks=2, cores=2, options={"cpu-affinity": "per-task"}), R({0: "1-3,9"}))
    affinity.shell_init(sh)
    for t in sh.tasks:
        affinity.task_init(sh, t)
    assert [t.cpus for t in sh.tasks] == [{1}, {2}]  # cpu 9 does not exist here
    sh = FakeShell(spec(options={"cpu-affinity": "off"}))
    affinity.shell_init(sh)
    affinity.task_init(sh, sh.tasks[0])
    assert sh.tasks[0].cpus is None
    sh = FakeShell(spec(options={"cpu-affinity": "verbose,on"}), R({0: "12-13"}))
    affinity.shell_init(sh)
    affinity.task_init(sh, sh.tasks[0])
    assert sh.tasks[0].cpus is None and "not bound" in sh.logs[0]


def test_gpubind():
    sh = FakeShell(spec(ntasks=2, gpus=1), R({0: "0-1"}, gpus={0: "2-3"}))
    gpubind.shell_init(sh)
    assert sh.env == {"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    sh = FakeShell(spec(ntasks=2, gpus=1, options={"gpu-affinity": "per-task"}),
                   R({0: "0-1"}, gpus={0: "2-3"}))
    gpubind.shell_init(sh)
    for t in sh.tasks:
        gpubind.task_init(sh, t)
    assert [t.env["CUDA_VISIBLE_DEVICES"] for t in sh.tasks] == ["2", "3"]
    sh = FakeShell()
    gpubind.shell_init(sh)
    assert sh.env == {"CUDA_VISIBLE_DEVICES": "-1"}  # no GPUs given: none used
    sh = FakeShell(spec(options={"gpu-affinity": "off"}))
    gpubind.shell_init(sh)
    assert sh.env == {}


# ------------------------------------------------------------------- tasks
def test_resolve_searches_the_tasks_path(tmp_path):
    exe = tmp_path / "mytool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(stat.S_IRWXU)
    assert resolve("mytool", {"PATH": str(tmp_path)}, None) == str(exe)
    with pytest.raises(TaskStartError) as ei:
        resolve("mytool", {"PATH": "/nonexistent"}, None)
    assert ei.value.errno == errno.ENOENT
    noexec = tmp_path / "data.txt"
    noexec.write_text("x")
    with pytest.raises(TaskStartError) as ei:
        resolve(str(noexec), {}, None)
    assert ei.value.errno == errno.EACCES
    assert resolve("./mytool", {}, str(tmp_path)) == os.path.join(str(tmp_path), "./mytool")


# ------------------------------------------------------------------ plugins
def test_plugin_stack_names_the_failing_plugin():
    calls = []

    class Good:
        @staticmethod
        def shell_init(shell):
            calls.append("good")

    class Bad:
        @staticmethod
        def task_init(shell, task):
            raise RuntimeError("boom")

    stack = PluginStack([("good", Good), ("bad", Bad)], load=False)
    stack.call("shell_init", "S")
    assert calls == ["good"]
    with pytest.raises(PluginFailed, match="plugin 'bad': task_init failed: boom"):
        stack.call("task_init", "S", "T")
    assert not stack.has("task_exec")


def test_installed_builtins_load():
    stack = PluginStack()
    names = {r.name for r in stack.records if r.loaded}
    assert {"affinity", "gpubind", "output", "input", "signal", "env-expand"} <= names
    assert stack.has("shell_init") and stack.has("task_init")


def test_stdin_writer_buffers_until_the_pipe_drains():
    from flux.shell.input import StdinWriter

    async def main():
        r, w = os.pipe()
        writer = StdinWriter(asyncio.get_running_loop(), w)
        big = b"x" * (1 << 20)  # more than a pipe holds
        writer.write(big)
        writer.close()
        got = bytearray()
        loop = asyncio.get_running_loop()
        while True:
            chunk = await loop.run_in_executor(None, os.read, r, 1 << 16)
            if not chunk:
                break
            got += chunk
        os.close(r)
        return bytes(got)

    assert asyncio.run(main()) == b"x" * (1 << 20)


def _spawn_side_by_side(tmp_path):
    """Tasks with different working directories and limits started side by side by the
    spawning threads each get their own (run in a forked child, see below)."""
    import resource

    from flux.shell.task import Spawner, Task

    sp = Spawner()
    # stdio fds numbered above the limit some tasks get (as in a busy shell server)
    pad = [os.open(os.devnull, os.O_RDONLY) for _ in range(70)]
    devnull = os.open(os.devnull, os.O_RDWR)
    dirs = [tmp_path / f"d{i}" for i in range(4)]
    for d in dirs:
        d.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    futs, outs = [], []
    for i in range(40):
        d = dirs[i % 4]
        out = os.open(d / f"out{i}", os.O_WRONLY | os.O_CREAT, 0o644)
        outs.append(out)
        t = Task(None, i, 0, ["sh", "-c", "pwd; ulimit -n"], {"PATH": os.environ["PATH"]}, str(d))
        if i % 4 == 3:
            t.rlimits = {resource.RLIMIT_NOFILE: 64}
        futs.append((sp.pool.submit(sp.spawn_all, [(t, (devnull, out, devnull))], False), d, i))
    for f, d, i in futs:
        pids, err = f.result(timeout=30)
        assert err is None
        os.waitpid(pids[0], 0)
        lines = (d / f"out{i}").read_text().split()
        assert lines[0] == str(d)
        assert lines[1] == ("64" if i % 4 == 3 else str(soft))
    for fd in outs + [devnull] + pad:
        os.close(fd)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
    assert os.getcwd() in (sp.initial_cwd, *map(str, dirs))
    sp.shutdown()


def test_spawner_keeps_each_tasks_cwd_and_limits_apart(tmp_path):
    # in a forked child: file descriptors of this process are opened and closed by other
    # tests' leftover threads, and a task's stdout fd must stay ours while it starts
    import multiprocessing
    import traceback

    def child():
        try:
            _spawn_side_by_side(tmp_path)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)

    p = multiprocessing.get_context("fork").Process(target=child)
    p.start()
    p.join(60)
    assert p.exitcode == 0, "the spawner check failed in the child (traceback above)"
