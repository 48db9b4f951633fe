"""PMI-1 served by the job shell (shell/pmi, shell/plugins/pmi.py) and the broker's
PMI bootstrap (core/broker/boot/pmi.py), with real instances, jobs and sockets."""

from __future__ import annotations

import json
import os
import re
import socket
import sys

import pytest
from flux.core.broker.boot.pmi import PMIError, SimpleClient
from flux.shell.pmi import wire

# A task that sends each request line of argv[1] (a JSON list) in one write and
# prints the response lines as a JSON list. A request ending in "!" expects no answer;
# RANK and KVS in a request are replaced by the task's rank and the kvsname (once
# get_my_kvsname has answered).
RAW = r"""
import json, os, socket, sys
s = socket.socket(fileno=int(os.environ["PMI_FD"]))
f = s.makefile("rb")
out = {"rank": int(os.environ["PMI_RANK"]), "size": int(os.environ["PMI_SIZE"]),
       "spawned": os.environ.get("PMI_SPAWNED"), "fd": os.environ["PMI_FD"], "resp": []}
kvs = "none"
for line in json.loads(sys.argv[1]):
    line = line.replace("RANK", str(out["rank"])).replace("KVS", kvs)
    quiet = line.endswith("!")
    s.sendall((line.rstrip("!") + "\n").encode())
    if not quiet:
        resp = f.readline().decode().rstrip("\n")
        out["resp"].append(resp)
        if resp.startswith("cmd=my_kvsname"):
            kvs = resp.split("kvsname=")[1]
print(json.dumps(out), flush=True)
"""


def wide(make_instance, size: int = 1):
    """An instance whose nodes each declare 8 cores (the machine may have fewer)."""
    hosts = f"pmi[0-{size - 1}]" if size > 1 else "pmi0"
    return make_instance(size, conf=[f'resource.config=[{{hosts="{hosts}", cores="0-7"}}]'],
                         extra=[f"--test-hosts={hosts}"])


def fields(line: str) -> dict:
    return dict(w.partition("=")[::2] for w in line.split())


@pytest.fixture
def raw(tmp_path):
    p = tmp_path / "pmi_raw.py"
    p.write_text(RAW)
    return str(p)


def run_raw(inst, raw, lines, *opts):
    r = inst.flux("run", *opts, sys.executable, raw, json.dumps(lines), timeout=60)
    assert r.returncode == 0, r.stderr
    outs = [json.loads(x) for x in r.stdout.splitlines()]
    return sorted(outs, key=lambda o: o["rank"])


def test_wire_parse_and_format():
    assert wire.parse("cmd=put kvsname=a key=b value=c=d") == {
        "cmd": "put", "kvsname": "a", "key": "b", "value": "c=d"}
    assert wire.format_line("get_result", rc=0, value="x") == b"cmd=get_result rc=0 value=x\n"
    with pytest.raises(wire.WireError):
        wire.parse("cmd=get garbage")
    with pytest.raises(wire.WireError):
        wire.parse("   ")


def test_handshake_and_environment(instance, raw):
    jobid_lines = ["cmd=init pmi_version=1 pmi_subversion=1", "cmd=get_maxes",
                   "cmd=get_universe_size", "cmd=get_appnum", "cmd=get_my_kvsname",
                   "cmd=finalize"]
    (out,) = run_raw(instance, raw, jobid_lines)
    assert out["rank"] == 0 and out["size"] == 1 and out["spawned"] == "0"
    assert out["fd"] == "3"
    init, maxes, univ, appnum, kvsname, fin = map(fields, out["resp"])
    assert init["cmd"] == "response_to_init" and init["rc"] == "0"
    assert init["pmi_version"] == "1"
    assert maxes == {"cmd": "maxes", "rc": "0", "kvsname_max": "64", "keylen_max": "64",
                     "vallen_max": "1024"}
    assert univ["cmd"] == "universe_size" and univ["size"] == "1"
    assert appnum["cmd"] == "appnum" and appnum["appnum"] == "0"
    assert kvsname["cmd"] == "my_kvsname" and kvsname["kvsname"].startswith(("ƒ", "f"))
    assert fin == {"cmd": "finalize_ack", "rc": "0"}


KVS_SCRIPT = r"""
import json, os, socket, sys
s = socket.socket(fileno=int(os.environ["PMI_FD"]))
f = s.makefile("rb")
rank = int(os.environ["PMI_RANK"])
def rq(line, answer=True):
    s.sendall((line + "\n").encode())
    return f.readline().decode().rstrip("\n") if answer else None
def fl(line):
    return dict(w.partition("=")[::2] for w in line.split())
res = {"rank": rank, "size": int(os.environ["PMI_SIZE"])}
rq("cmd=init pmi_version=1 pmi_subversion=1")
kvs = fl(rq("cmd=get_my_kvsname"))["kvsname"]
res["kvsname"] = kvs
res["put"] = rq(f"cmd=put kvsname={kvs} key=k.{rank} value=v-{rank}")
res["own_before"] = rq(f"cmd=get kvsname={kvs} key=k.{rank}")
res["barrier"] = rq("cmd=barrier_in")
res["after"] = [fl(rq(f"cmd=get kvsname={kvs} key=k.{r}")).get("value")
                for r in range(res["size"])]
res["missing"] = rq(f"cmd=get kvsname={kvs} key=nosuchkey")
res["mapping"] = fl(rq(f"cmd=get kvsname={kvs} key=PMI_process_mapping")).get("value")
res["level"] = fl(rq(f"cmd=get kvsname={kvs} key=flux.instance-level")).get("value")
res["taskmap"] = fl(rq(f"cmd=get kvsname={kvs} key=flux.taskmap")).get("value")
res["second_barrier"] = rq("cmd=barrier_in")
res["fin"] = rq("cmd=finalize")
print(json.dumps(res), flush=True)
"""


@pytest.fixture
def kvs_script(tmp_path):
    p = tmp_path / "pmi_kvs.py"
    p.write_text(KVS_SCRIPT)
    return str(p)


def _run_kvs(inst, script, *opts):
    r = inst.flux("run", *opts, sys.executable, script, timeout=60)
    assert r.returncode == 0, r.stderr
    return sorted((json.loads(x) for x in r.stdout.splitlines()), key=lambda o: o["rank"])


def test_exchange_one_node(make_instance, kvs_script):
    outs = _run_kvs(wide(make_instance), kvs_script, "-n3")
    assert [o["rank"] for o in outs] == [0, 1, 2]
    for o in outs:
        assert o["put"] == "cmd=put_result rc=0"
        own = fields(o["own_before"])
        assert own["cmd"] == "get_result" and own["rc"] != "0"  # not even its writer sees it
        assert o["barrier"] == "cmd=barrier_out rc=0"
        assert o["after"] == ["v-0", "v-1", "v-2"]
        missing = fields(o["missing"])
        assert missing["cmd"] == "get_result" and missing["rc"] != "0"
        assert "value" not in missing
        assert o["mapping"] == "(vector,(0,1,3))"
        assert o["level"] == "1"
        assert json.loads(o["taskmap"]) == [[0, 1, 3, 1]]
        assert o["second_barrier"] == "cmd=barrier_out rc=0"
        assert o["fin"] == "cmd=finalize_ack rc=0"
    assert len({o["kvsname"] for o in outs}) == 1


def test_exchange_across_shells(make_instance, kvs_script):
    inst = wide(make_instance, 2)
    outs = _run_kvs(inst, kvs_script, "-N2", "-n4")
    assert [o["rank"] for o in outs] == [0, 1, 2, 3]
    for o in outs:
        assert o["after"] == ["v-0", "v-1", "v-2", "v-3"]
        assert o["mapping"] == "(vector,(0,2,2))"
    # cyclic task map: the vector says so
    outs = _run_kvs(inst, kvs_script, "-N2", "-n4", "--taskmap=cyclic")
    assert {o["mapping"] for o in outs} == {"(vector,(0,2,1),(0,2,1))"}


def test_protocol_errors_keep_the_connection(instance, raw):
    big = "x" * (wire.VALLEN_MAX + 1)
    (out,) = run_raw(instance, raw, [
        "cmd=init pmi_version=1 pmi_subversion=1",
        "cmd=get_my_kvsname",
        "cmd=frobnicate",
        "cmd=put kvsname=nosuch key=a value=b",
        "garbage-without-equals",
        "cmd=put kvsname=KVS key=a value=" + big,
        "cmd=" + "y" * (wire.MAX_LINE + 10),
        "mcmd=spawn!",
        "nprocs=1!",
        "endcmd",
        "cmd=get_appnum",
    ])
    r = [fields(x) for x in out["resp"]]
    assert r[0]["rc"] == "0"
    del r[1]
    assert r[1]["cmd"] == "error" and r[1]["rc"] == "-1" and "frobnicate" in r[1]["msg"]
    assert r[2]["cmd"] == "put_result" and r[2]["rc"] != "0"
    assert r[3]["cmd"] == "error" and r[3]["rc"] == "-1"
    assert r[4]["cmd"] == "put_result" and r[4]["rc"] != "0" and "value_longer" in r[4]["msg"]
    assert r[5]["cmd"] == "error" and "longer" in r[5]["msg"]
    assert r[6]["cmd"] == "spawn_result" and r[6]["rc"] == "-1"
    assert r[7] == {"cmd": "appnum", "rc": "0", "appnum": "0"}  # still served


def test_pmi2_init_is_refused(instance, raw):
    (out,) = run_raw(instance, raw, ["cmd=init pmi_version=2 pmi_subversion=0"])
    r = fields(out["resp"][0])
    assert r["cmd"] == "response_to_init" and r["rc"] != "0"


def test_value_limits(instance, raw):
    """The server takes values up to vallen_max (1024) and keys up to 64 bytes."""
    val = "v" * wire.VALLEN_MAX
    (out,) = run_raw(instance, raw, [
        "cmd=init pmi_version=1 pmi_subversion=1", "cmd=get_my_kvsname",
        f"cmd=put kvsname=KVS key=big value={val}",
        "cmd=put kvsname=KVS key=" + "k" * 65 + " value=x",
        "cmd=barrier_in",
        "cmd=get kvsname=KVS key=big",
    ])
    r = [fields(x) for x in out["resp"]]
    assert r[2] == {"cmd": "put_result", "rc": "0"}
    assert r[3]["rc"] != "0" and "key_longer" in r[3]["msg"]
    assert r[5]["rc"] == "0" and r[5]["value"] == val


def test_pmi_off(instance):
    r = instance.flux("run", "-o", "pmi=off", "sh", "-c", "echo ${PMI_FD:-none} ${PMI_RANK:-none}",
                      check=True)
    assert r.stdout.strip() == "none none"
    r = instance.flux("run", "sh", "-c", "echo $PMI_FD $PMI_RANK $PMI_SIZE", check=True)
    assert r.stdout.strip() == "3 0 1"
    r = instance.flux("run", "-o", "pmi=bogus", "sh", "-c", "echo ${PMI_FD:-none}")
    assert r.stdout.strip() == "none"
    assert "bogus" in r.stderr


def test_abort_fails_the_job(instance, raw):
    r = instance.flux("run", "-n2", sys.executable, raw, json.dumps(
        ["cmd=init pmi_version=1 pmi_subversion=1", "cmd=abort exitcode=7 msg=bye!",
         "cmd=barrier_in"]), timeout=60)
    # the job gets a fatal exec exception; the other task (in a barrier) is killed
    assert r.returncode != 0
    assert "type=exec" in r.stderr
    assert re.search(r"task [01]: PMI abort with exit code 7: bye", r.stderr), r.stderr


def test_task_failing_inside_pmi_fails_the_job(instance, tmp_path):
    """Rank 1 dies after init without finalize while rank 0 waits in a barrier: the
    job fails at once (no hang) with an exception that says why."""
    script = tmp_path / "die.py"
    script.write_text(r"""
import os, sys
from flux.core.broker.boot.pmi import SimpleClient
c = SimpleClient.from_env()
c.init()
if c.rank == 1:
    sys.exit(5)
c.barrier()
""")
    r = instance.flux("run", "-n2", sys.executable, str(script), timeout=60)
    assert r.returncode != 0
    assert "task 1: exited with code 5 between PMI init and finalize" in r.stderr, r.stderr


def test_client_methods_and_fake_hostname(instance):
    # FLUX_PMI_CLIENT_METHODS without simple: a singleton even under PMI
    r = instance.flux("run", "-n1", "--env=FLUX_PMI_CLIENT_METHODS=single", "flux", "start",
                      "flux", "getattr", "broker.boot-method", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "single"
    r = instance.flux("run", "-n1", "--env=FLUX_FAKE_HOSTNAME=fakehost", "flux", "start",
                      "sh", "-c", "flux getattr broker.boot-method; flux getattr hostlist",
                      timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["simple", "fakehost"]


def test_client_rules():
    a, b = socket.socketpair()
    c = SimpleClient(a.detach(), 0, 1)
    with pytest.raises(PMIError) as ei:
        c.request("cmd=put kvsname=x key=y value=" + "z" * 1024, "put_result")
    assert "1024" in str(ei.value)
    b.sendall(b"cmd=bogus rc=0\n")
    with pytest.raises(PMIError):
        c.request("cmd=get_appnum", "appnum")
    b.close()
    with pytest.raises(PMIError):
        c.request("cmd=get_appnum", "appnum")
    with pytest.raises(PMIError):
        SimpleClient.from_env({"PMI_FD": "x", "PMI_RANK": "0", "PMI_SIZE": "1"})
    with pytest.raises(PMIError):
        SimpleClient.from_env({"PMI_FD": "3", "PMI_RANK": "2", "PMI_SIZE": "2"})


def test_nested_two_broker_instance(make_instance):
    inst = make_instance(2)
    r = inst.flux("run", "-N2", "-n2", "flux", "start", "sh", "-c",
                  "flux getattr size; flux getattr broker.boot-method; flux getattr jobid;"
                  " flux getattr instance-level; flux run -N2 -n2 hostname | wc -l;"
                  " flux getattr tbon.endpoint; env | grep -c ^PMI_ || true",
                  timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "2" and lines[1] == "simple"
    assert lines[2].startswith(("ƒ", "f")) and lines[3] == "1"
    assert lines[4] == "2"
    # two nodes in the PMI process mapping: tcp (CURVE) endpoints
    assert lines[5].startswith("tcp://")
    assert lines[6] == "0"  # the initial program is no PMI task


def test_nested_one_node_uses_ipc(make_instance):
    inst = wide(make_instance)
    r = inst.flux("run", "-n3", "flux", "start", "sh", "-c",
                  "flux getattr size; flux getattr tbon.endpoint; flux getattr broker.mapping;"
                  " flux overlay status", timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split("\n")
    assert out[0] == "3" and out[1].startswith("ipc://")
    assert json.loads(out[2]) == [[0, 1, 3, 1]]
    assert "full" in out[3] and out[4].count("full") == 1 and out[5].count("full") == 1


def test_nested_via_from_nest_command(make_instance):
    import flux
    from flux.job import JobspecV1, submit, wait

    inst = make_instance(2)
    h = flux.Flux(inst.uri)
    spec = JobspecV1.from_nest_command(["flux", "getattr", "size"], num_slots=2, num_nodes=2)
    spec.cwd = os.getcwd()
    spec.environment = dict(inst.env)
    jobid = submit(h, spec, waitable=True)
    res = wait(h, jobid)
    assert res.success, res.errstr
    r = inst.flux("job", "attach", str(jobid), check=True)
    assert r.stdout.strip() == "2"


def test_start_noexec_single():
    import subprocess

    flux = os.path.join(os.path.dirname(sys.executable), "flux")
    r = subprocess.run([flux, "start", "-X", "-Sa=1", "true"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("flux.core.broker.main -Sa=1 -- true")


def test_standalone_shells_exchange(make_instance, kvs_script):
    """Two `flux-shell JOBID` processes (the way guest jobs run), one per broker rank,
    serve one job's PMI: the exchange goes through the leader shell's own service."""
    import base64
    import subprocess

    import flux
    import orjson
    from flux.core.job.fluid import encode_kvs
    from flux.job import JobspecV1

    inst = wide(make_instance, 2)
    h = flux.Flux(inst.uri)
    jobid = 0x4321
    d = encode_kvs(jobid)
    spec = JobspecV1.from_command([sys.executable, kvs_script], num_tasks=2, num_nodes=2)
    spec.cwd = os.getcwd()
    spec.environment = dict(inst.env)
    R = {"version": 1, "execution": {
        "R_lite": [{"rank": "0-1", "children": {"core": "0"}}],
        "nodelist": ["pmi[0-1]"], "starttime": 0, "expiration": 0}}

    def val(obj):
        return {"ver": 1, "type": "val", "data": base64.b64encode(orjson.dumps(obj)).decode()}

    h.rpc("kvs.commit", {"namespace": "primary", "flags": 0, "ops": [
        {"key": f"{d}.jobspec", "flags": 0, "dirent": val(spec.jobspec)},
        {"key": f"{d}.R", "flags": 0, "dirent": val(R)}]}).get()
    h.rpc("kvs.namespace-create", {"namespace": f"job-{jobid}", "owner": os.getuid(),
                                   "flags": 0}).get()
    exe = os.path.join(os.path.dirname(sys.executable), "flux-shell")
    try:
        procs = []
        for rank in (1, 0):  # the follower first: it must wait for the leader
            env = dict(inst.env, FLUX_URI=f"local://{inst.rundir}/local-{rank}")
            procs.append(subprocess.Popen([exe, str(jobid)], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        for p in procs:
            _out, err = p.communicate(timeout=90)
            assert p.returncode == 0, err
        out = base64.b64decode(
            h.rpc("kvs.lookup", {"key": "output", "namespace": f"job-{jobid}", "flags": 0})
            .get()["val"]["data"]).decode()
        results = [json.loads(orjson.loads(line)["context"]["data"])
                   for line in out.splitlines()
                   if "data" in orjson.loads(line)["context"]]
        assert sorted(r["rank"] for r in results) == [0, 1]
        for r in results:
            assert r["after"] == ["v-0", "v-1"] and r["mapping"] == "(vector,(0,2,1))"
    finally:
        h.rpc("kvs.namespace-remove", {"namespace": f"job-{jobid}"}).get()


def test_flux_pmi_command(make_instance):
    inst = wide(make_instance, 2)
    r = inst.flux("run", "-N2", "-n4", "flux", "pmi", "exchange", "--count=3", timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"flux-pmi: exchange: 3 x 4 ranks: [0-9.]+s\n", r.stdout), r.stdout
    r = inst.flux("run", "-N2", "-n2", "flux", "pmi", "get", "--ranks=all",
                  "PMI_process_mapping", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(vector,(0,2,1))"] * 2
    r = inst.flux("run", "-n1", "flux", "pmi", "-v", "barrier", "--count=2", timeout=60)
    assert r.returncode == 0 and "-> cmd=barrier_in" in r.stderr
    r = inst.flux("run", "-n1", "flux", "pmi", "get", "nosuchkey", timeout=60)
    assert r.returncode != 0 and "nosuchkey: no such key" in r.stderr
    r = inst.flux("pmi", "--method=bogus", "barrier")
    assert r.returncode == 1 and "unknown PMI method 'bogus'" in r.stderr
    r = inst.flux("pmi", "barrier")  # no PMI here: a singleton
    assert r.returncode == 0 and "1 x 1 ranks" in r.stdout
