"""Jobspec (RFC 14/25; SPEC 2): builders, attribute helpers, validation, model round trips."""

from __future__ import annotations

import copy
import datetime
import errno
import io
import json
import os
import pathlib
import stat

import pytest
from flux.core.job import jobspec as core
from flux.core.job.jobspec import JobspecError
from flux.core.job.jobspec_model import CountRange, JobspecModel
from flux.job import Jobspec, JobspecV1, validate_jobspec
from hypothesis import given, settings
from hypothesis import strategies as st


def v1(**over):
    """A minimal valid V1 jobspec dict (slot>core), with top-level overrides."""
    js = {
        "version": 1,
        "resources": [{"type": "slot", "count": 1, "label": "task",
                       "with": [{"type": "core", "count": 1}]}],
        "tasks": [{"command": ["app"], "slot": "task", "count": {"per_slot": 1}}],
        "attributes": {"system": {"duration": 0}},
    }
    js.update(over)
    return js


# ------------------------------------------------------------ SPEC 2.5


def test_spec_worked_example():
    """flux submit -N2 -n4 -c2 -t 10 app (the CLI passes 10 minutes as "10m")."""
    env = {"HOME": "/home/u", "PATH": "/bin"}
    rl = {"nofile": 1024}
    js = JobspecV1.from_command(["app"], num_tasks=4, cores_per_task=2, num_nodes=2,
                                duration="10m", environment=env, cwd="/home/u", rlimits=rl)
    assert js.jobspec == {
        "version": 1,
        "resources": [{"type": "node", "count": 2, "with": [
            {"type": "slot", "count": 2, "label": "task",
             "with": [{"type": "core", "count": 2}]}]}],
        "tasks": [{"command": ["app"], "slot": "task", "count": {"per_slot": 1}}],
        "attributes": {"system": {"duration": 600.0, "environment": env, "cwd": "/home/u",
                                  "shell": {"options": {"rlimit": rl}}}},
    }
    assert isinstance(js.duration, float)
    c = js.counts()
    assert (c.nnodes, c.nslots, c.slot_size, c.ncores, c.ntasks) == (2, 4, 2, 8, 4)
    assert dict(js.resource_counts()) == {"node": 2, "slot": 4, "core": 8}
    # dumps is compact JSON that reads back equal
    text = js.dumps()
    assert ": " not in text and ", " not in text
    assert json.loads(text) == js.jobspec


def test_from_command_defaults():
    js = JobspecV1.from_command(["hostname"])
    assert js.resources == [{"type": "slot", "count": 1, "label": "task",
                             "with": [{"type": "core", "count": 1}]}]
    assert js.tasks == [{"command": ["hostname"], "slot": "task", "count": {"per_slot": 1}}]
    assert js.duration == 0 and js.environment == dict(os.environ)
    assert js.cwd is None and js.queue is None
    assert js.version == 1


@pytest.mark.parametrize("kw,resources,count", [
    (dict(num_tasks=3), [{"type": "slot", "count": 3, "label": "task",
                          "with": [{"type": "core", "count": 1}]}], {"per_slot": 1}),
    (dict(num_tasks=2, cores_per_task=4, gpus_per_task=1),
     [{"type": "slot", "count": 2, "label": "task",
       "with": [{"type": "core", "count": 4}, {"type": "gpu", "count": 1}]}], {"per_slot": 1}),
    (dict(num_tasks=2, gpus_per_task=0), [{"type": "slot", "count": 2, "label": "task",
                                           "with": [{"type": "core", "count": 1}]}], {"per_slot": 1}),
    (dict(num_tasks=5, num_nodes=4),
     [{"type": "node", "count": 4, "with": [{"type": "slot", "count": 2, "label": "task",
                                             "with": [{"type": "core", "count": 1}]}]}],
     {"total": 5}),
    (dict(num_tasks=4, num_nodes=4, exclusive=True),
     [{"type": "node", "count": 4, "exclusive": True,
       "with": [{"type": "slot", "count": 1, "label": "task",
                 "with": [{"type": "core", "count": 1}]}]}], {"per_slot": 1}),
])
def test_from_command_shapes(kw, resources, count):
    js = JobspecV1.from_command(["a"], environment={}, **kw)
    assert js.resources == resources
    assert js.tasks[0]["count"] == count
    JobspecV1.from_dict(js.jobspec)  # still valid V1


@pytest.mark.parametrize("kw,msg", [
    (dict(num_tasks=0), "task count"),
    (dict(num_tasks=1.5), "task count"),
    (dict(cores_per_task=0), "cores per task"),
    (dict(gpus_per_task=-1), "gpus per task"),
    (dict(num_nodes=0), "node count"),
    (dict(num_tasks=2, num_nodes=3), "greater than task count"),
    (dict(exclusive=True), "exclusive"),
    (dict(duration="banana"), "banana"),
    (dict(duration=-1), "negative"),
    (dict(duration="1f"), "1f"),
    (dict(environment="foo"), "environment"),
    (dict(env_expand=1), "env_expand"),
    (dict(rlimits=True), "rlimits"),
])
def test_from_command_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        JobspecV1.from_command(["sleep", "0"], **kw)


def test_from_command_rejects_bad_command():
    with pytest.raises(TypeError):
        JobspecV1.from_command("hostname")
    with pytest.raises(JobspecError, match="command"):
        JobspecV1.from_command([])
    with pytest.raises(JobspecError, match=r"command\[1\]"):
        JobspecV1.from_command(["a", 1])
    assert JobspecV1.from_command(("a", "b"), environment={}).tasks[0]["command"] == ["a", "b"]


def test_from_command_extra_options(tmp_path):
    js = JobspecV1.from_command(
        ["app"], environment={"A": "1"}, env_expand={"R": "{{rank}}"}, cwd=tmp_path,
        name="myjob", input="in.txt", output="out.txt", error="err.txt", label_io=True,
        unbuffered=True, queue="batch", bank="physics", duration=datetime.timedelta(minutes=2))
    sysattr = js.attributes["system"]
    assert sysattr["duration"] == 120.0
    assert sysattr["cwd"] == str(tmp_path)
    assert sysattr["job"] == {"name": "myjob"}
    assert sysattr["queue"] == "batch" and sysattr["bank"] == "physics"
    opts = sysattr["shell"]["options"]
    assert opts["env-expand"] == {"R": "{{rank}}"}
    assert opts["input"] == {"stdin": {"type": "file", "path": "in.txt"}, "batch-timeout": 0.0}
    assert opts["output"]["stdout"] == {"type": "file", "path": "out.txt", "label": True,
                                        "buffer": {"type": "none"}}
    assert opts["output"]["stderr"] == {"type": "file", "path": "err.txt", "label": True,
                                        "buffer": {"type": "none"}}
    assert opts["output"]["batch-timeout"] == 0.05
    assert js.unbuffered
    # "kvs" and "none" mean the default output, not a file
    js2 = JobspecV1.from_command(["app"], environment={}, output="kvs", error="none")
    assert js2.output is None and js2.error is None


def test_per_resource():
    js = JobspecV1.per_resource(["a"], ncores=8, nnodes=2, per_resource_type="node",
                                per_resource_count=2, environment={})
    assert js.resources == [{"type": "node", "count": 2, "with": [
        {"type": "slot", "count": 1, "label": "task", "with": [{"type": "core", "count": 4}]}]}]
    assert js.getattr("shell.options.per-resource") == {"type": "node", "count": 2}
    js = JobspecV1.per_resource(["a"], ncores=3, per_resource_type="core", per_resource_count=1,
                                environment={})
    assert js.resources[0]["type"] == "slot" and js.resources[0]["count"] == 3
    js = JobspecV1.per_resource(["a"], nnodes=2, exclusive=True, gpus_per_node=2, environment={})
    assert js.resources[0]["exclusive"] is True
    assert js.resources[0]["with"][0]["with"] == [{"type": "core", "count": 1},
                                                  {"type": "gpu", "count": 2}]
    for kw in (dict(), dict(nnodes=2), dict(ncores=3, nnodes=2), dict(ncores=1, nnodes=2),
               dict(per_resource_type="node"), dict(ncores=1, per_resource_type="socket",
                                                    per_resource_count=1),
               dict(ncores=2, gpus_per_node=1), dict(ncores=2, exclusive=True)):
        with pytest.raises(ValueError):
            JobspecV1.per_resource(["a"], **kw)


BATCH_SCRIPT = "#!/bin/sh\nflux run hostname\n"


def test_from_batch_command():
    js = JobspecV1.from_batch_command(BATCH_SCRIPT, "myscript.sh", args=["x", "y"], num_slots=4,
                                      cores_per_slot=2, num_nodes=2, broker_opts=["-Sfoo=1"],
                                      environment={}, output="flux-{{id}}.out")
    assert js.tasks == [{"command": ["flux", "broker", "-Sfoo=1", "{{tmpdir}}/script", "x", "y"],
                         "slot": "task", "count": {"per_slot": 1}}]
    assert js.resources == [{"type": "node", "count": 2, "with": [
        {"type": "slot", "count": 2, "label": "task", "with": [{"type": "core", "count": 2}]}]}]
    sysattr = js.attributes["system"]
    assert sysattr["job"]["name"] == "myscript.sh"
    assert sysattr["files"]["script"] == {"mode": stat.S_IFREG | 0o700, "data": BATCH_SCRIPT,
                                          "encoding": "utf-8"}
    opts = sysattr["shell"]["options"]
    assert opts["per-resource"] == {"type": "node"}
    assert opts["mpi"] == "none" and opts["exit-timeout"] == "none"
    assert opts["output"]["stdout"] == {"type": "file", "path": "flux-{{id}}.out"}
    with pytest.raises(ValueError, match="#!"):
        JobspecV1.from_batch_command("echo hi\n", "nosheb")


def test_from_nest_command_with_conf():
    js = JobspecV1.from_nest_command(["sleep", "inf"], num_slots=2, num_nodes=2, exclusive=True,
                                     conf={"resource": {"noverify": True}}, environment={})
    assert js.tasks[0]["command"] == ["flux", "broker", "-c{{tmpdir}}/conf.json", "sleep", "inf"]
    assert js.resources[0]["exclusive"] is True
    files = js.attributes["system"]["files"]
    assert files["conf.json"] == {"mode": stat.S_IFREG | 0o600,
                                  "data": {"resource": {"noverify": True}}}
    assert js.counts().exclusive


# ------------------------------------------------------ attribute helpers


def test_setattr_key_rules():
    js = Jobspec.from_dict(v1())
    js.setattr("cow", 1)
    js.setattr("system.cat", 2)
    js.setattr("user.dog", 3)
    js.setattr("attributes.system.chicken", 4)
    js.setattr("attributes.user.duck", 5)
    js.setattr(".user.emu", 7)
    assert js.getattr("cow") == js.getattr("system.cow") == js.getattr("attributes.system.cow") == 1
    assert js.getattr("cat") == 2
    assert js.getattr("user.dog") == js.getattr("attributes.user.dog") == 3
    assert js.getattr("chicken") == 4
    assert js.getattr("user.duck") == 5 and js.getattr("user.emu") == 7
    assert js.attributes == {"system": {"duration": 0, "cow": 1, "cat": 2, "chicken": 4},
                             "user": {"dog": 3, "duck": 5, "emu": 7}}
    js.setattr("attributes.goat", 6)  # allowed, as in flux-core, but no longer valid
    assert js.getattr("attributes.goat") == 6
    with pytest.raises(JobspecError, match="goat"):
        js.validate()
    for missing in ("nope", "user.nope", "system.duration.x", "attributes.nope"):
        with pytest.raises(KeyError):
            js.getattr(missing)


def test_setattr_through_non_dict():
    js = Jobspec.from_dict(v1())
    js.setattr("a.b", 1)
    with pytest.raises(TypeError, match="not a dictionary"):
        js.setattr("a.b.c", 2)


def test_shell_options():
    js = JobspecV1.from_dict(v1())
    js.setattr_shell_option("verbose", 2)
    js.setattr_shell_option("cpu-affinity", "per-task")
    js.setattr_shell_option("signal.timeleft", 60)
    assert js.attributes["system"]["shell"]["options"] == {
        "verbose": 2, "cpu-affinity": "per-task", "signal": {"timeleft": 60}}
    assert js.getattr_shell_option("signal.timeleft") == 60
    assert js.getattr_shell_option("nope", "dflt") == "dflt"


@pytest.mark.parametrize("value,seconds", [
    (100, 100.0), (100.5, 100.5), ("100s", 100.0), ("1.5m", 90.0), ("2h", 7200.0), ("1d", 86400.0),
    ("10ms", 0.01), (datetime.timedelta(seconds=100.5), 100.5), (0, 0.0),
])
def test_duration_setter(value, seconds):
    js = JobspecV1.from_dict(v1())
    js.duration = value
    assert js.duration == seconds and isinstance(js.duration, float)


def test_duration_setter_errors():
    js = JobspecV1.from_dict(v1())
    for bad in (-100, -100.5, datetime.timedelta(seconds=-5), "10h5m", "banana", "inf",
                float("nan"), float("inf")):
        with pytest.raises(ValueError):
            js.duration = bad
    for bad in ([], {}, None, True):
        with pytest.raises(TypeError):
            js.duration = bad
    assert js.duration == 0


def test_cwd_environment_queue(tmp_path):
    js = JobspecV1.from_dict(v1())
    js.cwd = pathlib.PosixPath("/tmp")
    assert js.cwd == "/tmp"
    with pytest.raises(ValueError):
        js.cwd = 42
    env = {"HOME": "foo", "foo": "bar"}
    js.environment = env
    assert js.environment is env
    with pytest.raises(ValueError):
        js.environment = "x=y"
    js.queue = "debug"
    assert js.queue == "debug"
    with pytest.raises(TypeError):
        js.queue = 12


@pytest.mark.parametrize("name,alias,iotype,stream", [
    ("input", "stdin", "input", "stdin"),
    ("output", "stdout", "output", "stdout"),
    ("error", "stderr", "output", "stderr"),
])
def test_stdio_properties(name, alias, iotype, stream):
    js = JobspecV1.from_dict(v1())
    assert getattr(js, name) is None and getattr(js, alias) is None
    for path in ("foo.txt", pathlib.Path("bar.md")):
        setattr(js, alias, path)
        assert getattr(js, name) == getattr(js, alias) == str(path)
        assert js.getattr(f"shell.options.{iotype}.{stream}") == {"type": "file", "path": str(path)}
    with pytest.raises(TypeError):
        setattr(js, name, None)


def test_unbuffered_toggle():
    js = JobspecV1.from_dict(v1())
    assert js.unbuffered is False
    js.output = "out"
    js.unbuffered = True
    assert js.unbuffered is True
    js.unbuffered = False
    assert js.unbuffered is False
    assert js.attributes["system"]["shell"]["options"] == {
        "output": {"stdout": {"type": "file", "path": "out"}}}
    with pytest.raises(TypeError):
        js.unbuffered = 1


def test_add_file(tmp_path):
    js = JobspecV1.from_dict(v1())
    js.add_file("inline.txt", "line one\nline two\n")
    js.add_file("conf.json", {"a": 1})
    js.add_file("encoded", "aGVsbG8=", perms=0o644, encoding="base64")
    text = tmp_path / "t.txt"
    text.write_text("hello")
    text.chmod(0o640)
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\xff\x00\xfe")
    js.add_file("t.txt", str(text))
    js.add_file("b.bin", str(binary))
    files = js.attributes["system"]["files"]
    assert files["inline.txt"] == {"mode": stat.S_IFREG | 0o600, "data": "line one\nline two\n",
                                   "encoding": "utf-8"}
    assert files["conf.json"] == {"mode": stat.S_IFREG | 0o600, "data": {"a": 1}}
    assert files["encoded"] == {"mode": stat.S_IFREG | 0o644, "data": "aGVsbG8=", "encoding": "base64"}
    assert files["t.txt"]["data"] == "hello" and files["t.txt"]["encoding"] == "utf-8"
    assert files["t.txt"]["size"] == 5 and stat.S_IMODE(files["t.txt"]["mode"]) == 0o640
    assert files["b.bin"] == {"mode": files["b.bin"]["mode"], "size": 3, "data": "/wD+",
                              "encoding": "base64"}
    with pytest.raises(TypeError):
        js.add_file("x", 12)
    with pytest.raises(ValueError):
        js.add_file("x", "data", encoding="rot13")
    js.validate()


def test_dumps_and_str_repr():
    js = JobspecV1.from_command(["échelle"], environment={"LANG": "fr_FR.UTF-8"})
    text = js.dumps()
    assert "échelle" in text and "\\u" not in text
    assert json.loads(js.dumps(indent=2)) == js.jobspec
    assert eval(repr(js), {"JobspecV1": JobspecV1}).jobspec == js.jobspec  # noqa: S307
    assert str(js) == str(js.jobspec)
    # tuples (from Python callers) still serialize
    js.setattr("user.t", (1, 2))
    assert json.loads(js.dumps())["attributes"]["user"]["t"] == [1, 2]


def test_to_dict_is_live_and_from_dict_wraps():
    d = v1()
    js = JobspecV1.from_dict(d)
    assert js.to_dict() is d
    js.setattr("queue", "q")
    assert d["attributes"]["system"]["queue"] == "q"


# -------------------------------------------------------------- reading


V1_YAML = """\
version: 1
resources:
  - type: node
    count: 4
    with:
    - type: slot
      count: 4
      label: default
      with:
        - type: core
          count: 1
        - type: gpu
          count: 1
tasks:
  - command: [ "myapp" ]
    slot: default
    count:
      per_slot: 1
attributes:
  system:
    duration: 3600.
    cwd: "/home/flux"
    environment:
      HOME: "/home/flux"
"""

CANONICAL_YAML = """\
version: 1
resources:
  - type: node
    count: 1
    with:
      - type: slot
        label: read-db
        count: 10
        with:
          - type: core
            count: 1
          - type: memory
            count: 4
            unit: GB
      - type: slot
        label: db
        count: 1
        with:
          - type: core
            count: 6
          - type: memory
            count: 24
            unit: GB
tasks:
  - command: [read-db]
    slot: read-db
    count:
      per_slot: 1
  - command: [db]
    slot: db
    count:
      per_slot: 1
attributes:
  system:
    duration: 3600.
"""


def test_read_yaml_v1(tmp_path):
    js = JobspecV1.from_yaml_stream(io.StringIO(V1_YAML))
    assert js.duration == 3600.0 and js.cwd == "/home/flux"
    assert dict(js.resource_counts()) == {"node": 4, "slot": 16, "core": 16, "gpu": 16}
    c = js.counts()
    assert (c.nnodes, c.nslots, c.slot_size, c.slot_gpus, c.ngpus, c.ntasks) == (4, 16, 1, 1, 16, 16)
    path = tmp_path / "js.yaml"
    path.write_text(V1_YAML)
    assert JobspecV1.from_yaml_file(path).jobspec == js.jobspec
    assert JobspecV1.from_yaml_stream(V1_YAML.encode()).jobspec == js.jobspec
    # JSON goes through the fast path and gives the same thing
    assert JobspecV1.loads(json.dumps(js.jobspec)).jobspec == js.jobspec
    assert JobspecV1.from_yaml_stream(io.BytesIO(json.dumps(js.jobspec).encode())).jobspec == js.jobspec


def test_canonical_counts_and_walk():
    js = Jobspec.from_yaml_stream(CANONICAL_YAML)
    counts = js.resource_counts()
    assert (counts["node"], counts["slot"], counts["core"], counts["memory"]) == (1, 11, 16, 64)
    assert counts["gpu"] == 0
    assert len(list(js)) == 7
    assert [r["type"] for r in js if r["type"] == "core"] == ["core", "core"]
    walk = list(js.resource_walk())
    assert walk[0][0] is None and walk[0][2] == 1
    assert [n for _, r, n in walk if r["type"] == "memory"] == [40, 24]
    with pytest.raises(JobspecError, match="memory"):  # not V1
        JobspecV1.from_yaml_stream(CANONICAL_YAML)


@pytest.mark.parametrize("text,msg", [
    ("version: 1\nresources: [\n", "YAML"),
    ("{\"version\": 1,", "YAML/JSON"),
    ("- just\n- a list\n", "must be an object"),
    ("hello", "must be an object"),
    ("", "must be an object"),
    (b"\xff\xfe", "UTF-8"),
])
def test_read_bad_documents(text, msg):
    with pytest.raises(JobspecError, match=msg):
        Jobspec.loads(text)


# ----------------------------------------------------------- validation

BAD_V1 = [
    ("missing version", lambda d: d.pop("version"), "missing required key 'version'"),
    ("missing resources", lambda d: d.pop("resources"), "missing required key 'resources'"),
    ("missing tasks", lambda d: d.pop("tasks"), "missing required key 'tasks'"),
    ("missing attributes", lambda d: d.pop("attributes"), "missing required key 'attributes'"),
    ("extra top key", lambda d: d.update(extra=1), "unknown top-level key 'extra'"),
    ("version 2", lambda d: d.update(version=2), "version must be 1"),
    ("version string", lambda d: d.update(version="1"), "version must be an integer"),
    ("resources not list", lambda d: d.update(resources={}), "resources must be a non-empty array"),
    ("resources empty", lambda d: d.update(resources=[]), "resources must be a non-empty array"),
    ("resource not object", lambda d: d.update(resources=[1]), r"resources\[0\] must be an object"),
    ("unknown type", lambda d: d["resources"][0]["with"][0].update(type="socket"),
     "unknown resource type 'socket'"),
    ("type missing", lambda d: d["resources"][0].pop("type"), "missing required key 'type'"),
    ("type not string", lambda d: d["resources"][0].update(type=5), "type must be a non-empty string"),
    ("count missing", lambda d: d["resources"][0].pop("count"), "missing required key 'count'"),
    ("count zero", lambda d: d["resources"][0].update(count=0), "must be >= 1"),
    ("count negative", lambda d: d["resources"][0]["with"][0].update(count=-2), "must be >= 1"),
    ("gpu negative", lambda d: d["resources"][0]["with"].append({"type": "gpu", "count": -1}),
     "must be >= 0"),
    ("count float", lambda d: d["resources"][0].update(count=1.5), "must be an integer in jobspec V1"),
    ("count range in v1", lambda d: d["resources"][0].update(count={"min": 1}),
     "must be an integer in jobspec V1"),
    ("count string in v1", lambda d: d["resources"][0].update(count="2"),
     "must be an integer in jobspec V1"),
    ("count bool", lambda d: d["resources"][0].update(count=True), "must be an integer"),
    ("slot without label", lambda d: d["resources"][0].pop("label"), "must have a 'label'"),
    ("slot without with", lambda d: d["resources"][0].pop("with"), "must contain resources"),
    ("with not array", lambda d: d["resources"][0].update({"with": {"type": "core", "count": 1}}),
     "with must be an array"),
    ("exclusive not bool", lambda d: d["resources"][0].update(exclusive="yes"), "exclusive must be"),
    ("label not string", lambda d: d["resources"][0].update(label=1), "label must be a string"),
    ("unit not string", lambda d: d["resources"][0].update(unit=[]), "unit must be a string"),
    ("unknown resource key", lambda d: d["resources"][0].update(color="red"), "unknown key 'color'"),
    ("two top-level", lambda d: d["resources"].append(copy.deepcopy(d["resources"][0]) | {"label": "b"}),
     "exactly one top-level vertex"),
    ("core at top", lambda d: d.update(resources=[{"type": "core", "count": 1}]),
     "top-level resource must be node or slot"),
    ("slot>node", lambda d: d["resources"][0].update({"with": [{"type": "node", "count": 1}]}),
     "slot must contain one core"),
    ("slot>gpu only", lambda d: d["resources"][0].update({"with": [{"type": "gpu", "count": 1}]}),
     "slot must contain one core"),
    ("slot>core,core", lambda d: d["resources"][0]["with"].append({"type": "core", "count": 1}),
     "slot must contain one core"),
    ("slot>3 things", lambda d: d["resources"][0]["with"].extend(
        [{"type": "gpu", "count": 1}, {"type": "gpu", "count": 1}]), "slot must contain one core"),
    ("core>core", lambda d: d["resources"][0]["with"][0].update({"with": [{"type": "core", "count": 1}]}),
     "cannot contain other resources"),
    ("node>core", lambda d: d.update(resources=[{"type": "node", "count": 1,
                                                 "with": [{"type": "core", "count": 1}]}]),
     "node must contain exactly one slot"),
    ("node>2 slots", lambda d: d.update(resources=[{"type": "node", "count": 1, "with": [
        {"type": "slot", "count": 1, "label": "task", "with": [{"type": "core", "count": 1}]},
        {"type": "slot", "count": 1, "label": "t2", "with": [{"type": "core", "count": 1}]}]}]),
     "node must contain exactly one slot"),
    ("duplicate label", lambda d: d.update(resources=[{"type": "node", "count": 1, "label": "task",
                                                       "with": d["resources"]}]),
     "label 'task' is already used"),
    ("tasks empty", lambda d: d.update(tasks=[]), "tasks must be a non-empty array"),
    ("two tasks", lambda d: d["tasks"].append(copy.deepcopy(d["tasks"][0])), "exactly one entry"),
    ("task not object", lambda d: d.update(tasks=["app"]), r"tasks\[0\] must be an object"),
    ("missing command", lambda d: d["tasks"][0].pop("command"), "missing required key 'command'"),
    ("command string", lambda d: d["tasks"][0].update(command="app"), "non-empty array of strings"),
    ("command empty", lambda d: d["tasks"][0].update(command=[]), "non-empty array of strings"),
    ("command int", lambda d: d["tasks"][0].update(command=["a", 2]), r"command\[1\] must be a string"),
    ("missing slot", lambda d: d["tasks"][0].pop("slot"), "missing required key 'slot'"),
    ("slot mismatch", lambda d: d["tasks"][0].update(slot="foo"), "'foo' does not match the label"),
    ("slot label on core", lambda d: d["resources"][0]["with"][0].update(label="c") or
     d["tasks"][0].update(slot="c"), "'c' does not match the label of any slot"),
    ("missing task count", lambda d: d["tasks"][0].pop("count"), "missing required key 'count'"),
    ("task count not object", lambda d: d["tasks"][0].update(count=1), "count must be an object"),
    ("task count empty", lambda d: d["tasks"][0].update(count={}), "exactly one of"),
    ("task count two keys", lambda d: d["tasks"][0].update(count={"per_slot": 1, "total": 2}),
     "exactly one of"),
    ("task count unknown", lambda d: d["tasks"][0].update(count={"per_node": 1}), "unknown key 'per_node'"),
    ("per_slot 2", lambda d: d["tasks"][0].update(count={"per_slot": 2}), "per_slot must be 1"),
    ("per_slot 0", lambda d: d["tasks"][0].update(count={"per_slot": 0}), "per_slot must be >= 1"),
    ("total 0", lambda d: d["tasks"][0].update(count={"total": 0}), "total must be >= 1"),
    ("total string", lambda d: d["tasks"][0].update(count={"total": "4"}), "total must be an integer"),
    ("per_resource", lambda d: d["tasks"][0].update(count={"per_resource": {"type": "core", "count": 1}}),
     "per_resource is not allowed in jobspec V1"),
    ("task attributes", lambda d: d["tasks"][0].update(attributes=[]), "attributes must be an object"),
    ("unknown task key", lambda d: d["tasks"][0].update(foo=1), "unknown key 'foo'"),
    ("attributes null", lambda d: d.update(attributes=None), "attributes must be an object"),
    ("attributes bad key", lambda d: d["attributes"].update(foo={}), "unknown key 'foo'"),
    ("no system", lambda d: d.update(attributes={}), "attributes.system is required"),
    ("system not object", lambda d: d["attributes"].update(system=[]), "system must be an object"),
    ("user not object", lambda d: d["attributes"].update(user=1), "user must be an object"),
    ("no duration", lambda d: d["attributes"]["system"].pop("duration"), "duration is required"),
    ("duration banana", lambda d: d["attributes"]["system"].update(duration="banana"),
     "duration must be a number of seconds, not string 'banana'"),
    ("duration negative", lambda d: d["attributes"]["system"].update(duration=-1),
     "duration must be a finite number >= 0"),
    ("duration nan", lambda d: d["attributes"]["system"].update(duration=float("nan")), "finite"),
    ("duration inf", lambda d: d["attributes"]["system"].update(duration=float("inf")), "finite"),
    ("duration bool", lambda d: d["attributes"]["system"].update(duration=True), "must be a number"),
    ("cwd int", lambda d: d["attributes"]["system"].update(cwd=1), "cwd must be a string"),
    ("queue list", lambda d: d["attributes"]["system"].update(queue=["a"]), "queue must be a string"),
    ("env list", lambda d: d["attributes"]["system"].update(environment=["A=1"]),
     "environment must be an object"),
    ("env value int", lambda d: d["attributes"]["system"].update(environment={"A": 1}),
     r"environment\['A'\] must be a string or null"),
    ("job name int", lambda d: d["attributes"]["system"].update(job={"name": 5}),
     "job.name must be a string"),
    ("shell options list", lambda d: d["attributes"]["system"].update(shell={"options": []}),
     "shell.options must be an object"),
    ("deps not array", lambda d: d["attributes"]["system"].update(dependencies={}),
     "dependencies must be an array"),
    ("dep missing value", lambda d: d["attributes"]["system"].update(dependencies=[{"scheme": "afterok"}]),
     "missing required key 'value'"),
    ("dep value int", lambda d: d["attributes"]["system"].update(
        dependencies=[{"scheme": "afterok", "value": 5}]), "value must be a string"),
    ("constraints not object", lambda d: d["attributes"]["system"].update(constraints=[]),
     "constraints must be an object"),
    ("constraint bad op", lambda d: d["attributes"]["system"].update(constraints={"foo": []}),
     "unknown constraint operator 'foo'"),
    ("constraint bad property", lambda d: d["attributes"]["system"].update(
        constraints={"properties": ["a|b"]}), "invalid character"),
    ("constraint bad hostlist", lambda d: d["attributes"]["system"].update(
        constraints={"and": [{"hostlist": ["foo[1-"]}]}), "invalid hostlist"),
    ("constraint bad ranks", lambda d: d["attributes"]["system"].update(
        constraints={"not": [{"ranks": ["x"]}]}), "invalid idset"),
    ("constraint arg not array", lambda d: d["attributes"]["system"].update(
        constraints={"properties": "a"}), "must be an array"),
    ("files not object", lambda d: d["attributes"]["system"].update(files=[]), "files must be an object"),
    ("file bad encoding", lambda d: d["attributes"]["system"].update(
        files={"x": {"data": "", "encoding": "rot13"}}), "encoding must be utf-8 or base64"),
    ("preemptible-after negative", lambda d: d["attributes"]["system"].update(
        {"preemptible-after": -1}), "preemptible-after"),
]


@pytest.mark.parametrize("name,mutate,msg", BAD_V1, ids=[b[0] for b in BAD_V1])
def test_v1_rejects(name, mutate, msg):
    d = v1()
    mutate(d)
    with pytest.raises(JobspecError, match=msg) as info:
        JobspecV1.from_dict(d)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    with pytest.raises(JobspecError):
        validate_jobspec(json.dumps(d, default=str).replace("NaN", "null"), require_version=1) \
            if name not in ("duration nan", "duration inf") else JobspecV1.from_dict(d)


def test_constructor_validates():
    d = v1()
    assert JobspecV1(**d).jobspec == d
    assert Jobspec(**d).jobspec == d
    with pytest.raises(JobspecError, match="version must be 1"):
        JobspecV1(d["resources"], d["tasks"], d["attributes"], version=2)
    with pytest.raises(TypeError):
        Jobspec(**v1(extra=1))  # unexpected keyword, as in flux-core


def test_valid_v1_variants():
    ok = [
        v1(),
        v1(tasks=[{"command": ["a"], "slot": "task", "count": {"total": 7}}]),
        v1(resources=[{"type": "node", "count": 1, "exclusive": True, "unit": "", "with": [
            {"type": "slot", "count": 1, "label": "default",
             "with": [{"type": "core", "count": 1}, {"type": "gpu", "count": 0}]}]}],
           tasks=[{"command": ["a"], "slot": "default", "count": {"per_slot": 1},
                   "attributes": {"environment": {"X": "1"}}, "distribution": "cyclic"}]),
        v1(attributes={"system": {"duration": 1, "environment": {"UNSET": None},
                                  "dependencies": [{"scheme": "afterok", "value": "fNH", "k": 1}],
                                  "constraints": {"and": [{"properties": ["amd", "^gpu"]},
                                                          {"hostlist": ["n[1-4]"]},
                                                          {"not": [{"ranks": ["0-1"]}]}]},
                                  "preemptible-after": 0, "exec": {"test": {}}, "anything": [1]},
                       "user": {"note": "hi"}}),
        v1(resources=[{"type": "slot", "count": 2, "label": "task",
                       "with": [{"type": "gpu", "count": 1}, {"type": "core", "count": 3}]}]),
    ]
    for d in ok:
        JobspecV1.from_dict(d)
        Jobspec.from_dict(d)


# --------------------------------------------------------- canonical


def canonical(resources, count=None):
    return {"version": 1, "resources": resources,
            "tasks": [{"command": ["a"], "slot": "s", "count": count or {"per_slot": 1}}],
            "attributes": {}}


def slot(*children, count=1):
    return {"type": "slot", "label": "s", "count": count, "with": list(children)}


@pytest.mark.parametrize("count", [
    4, "4", "1-4", "2,4,8", "[1-3,5]", {"min": 1}, {"min": 2, "max": 8},
    {"min": 1, "max": 9, "operator": "+", "operand": 2}, {"min": 2, "operator": "*", "operand": 2},
    {"min": 2, "max": 64, "operator": "^", "operand": 2}, "1-5:2:*", "8+", "[100+]", "1-4:2",
    "2+:2:^",
])
def test_canonical_counts_ok(count):
    js = Jobspec.from_dict(canonical([{"type": "socket", "count": count,
                                       "with": [slot({"type": "core", "count": 2},
                                                     {"type": "memory", "count": 0, "unit": "GB"})]}]))
    assert js.resource_counts()["socket"] == core.count_min(count)


@pytest.mark.parametrize("count,msg", [
    ({"max": 4}, "needs 'min'"),
    ({"min": 0}, "min must be >= 1"),
    ({"min": 4, "max": 2}, "max .* must be >= min"),
    ({"min": 1, "operator": "+"}, "operator and operand must be given together"),
    ({"min": 1, "operand": 2}, "operator and operand must be given together"),
    ({"min": 1, "operator": "/", "operand": 2}, "operator must be one of"),
    ({"min": 1, "operator": "**", "operand": 2}, "operator must be one of"),
    ({"min": 1, "operator": "*", "operand": 1}, "operand must be >= 2"),
    ({"min": 1, "operator": "^", "operand": 2}, "min must be >= 2"),
    ({"min": "1"}, "min must be an integer"),
    ({"min": 1, "step": 2}, "unknown key 'step'"),
    ("abc", "count string"),
    ("1-4:2:/", "operator must be one of"),
    ("4-1", "max .* must be >= min"),
    ("1:2:3:4", "count string"),
    ("", "count string"),
    (-1, "must be >= 0"),
    (1.5, "must be an integer, a range object"),
    (None, "must be an integer, a range object"),
])
def test_canonical_counts_bad(count, msg):
    with pytest.raises(JobspecError, match=msg):
        Jobspec.from_dict(canonical([{"type": "socket", "count": count,
                                      "with": [slot({"type": "core", "count": 1})]}]))


def test_canonical_other_rules():
    ok = canonical([slot({"type": "core", "count": 1})],
                   count={"per_resource": {"type": "core", "count": 2}})
    Jobspec.from_dict(ok)
    ok["resources"][0]["requires"] = ["x"]  # unknown keys are kept in canonical jobspec
    Jobspec.from_dict(ok)
    Jobspec.from_dict(canonical([slot({"type": "core", "count": 1})], count={"per_slot": 3}))
    with pytest.raises(JobspecError, match="core count must be >= 1"):
        Jobspec.from_dict(canonical([slot({"type": "core", "count": "0-2"})]))
    with pytest.raises(JobspecError, match="per_resource must be an object"):
        Jobspec.from_dict(canonical([slot({"type": "core", "count": 1})],
                                    count={"per_resource": {"type": "core"}}))
    with pytest.raises(JobspecError, match="version must be >= 1"):
        Jobspec.from_dict(dict(canonical([slot({"type": "core", "count": 1})]), version=0))
    with pytest.raises(JobspecError, match="must be >= 1 for node"):
        Jobspec.from_dict(canonical([{"type": "node", "count": 0,
                                      "with": [slot({"type": "core", "count": 1})]}]))


def test_count_range_helpers():
    r = CountRange.from_string("1-5:2:*")
    assert r == CountRange(min=1, max=5, operator="*", operand=2)
    assert list(CountRange(min=2, max=64, operator="^", operand=2).values(1000)) == [2, 4, 16]
    assert list(CountRange(min=1, max=9, operator="+", operand=3).values(100)) == [1, 4, 7]
    assert list(CountRange(min=3).values(5)) == [3, 4, 5]
    assert CountRange(min=8).to_string() == "8+"
    assert CountRange.from_string(r.to_string()) == r
    assert core.count_min("8+") == 8 and core.count_min("3,5") == 3 and core.count_min(r) == 1


# ------------------------------------------------------ validate_jobspec


def test_validate_jobspec_forms():
    d = v1()
    ok, obj = validate_jobspec(json.dumps(d))
    assert ok is True and type(obj) is JobspecV1
    ok, obj = validate_jobspec(json.dumps(d).encode())
    assert type(obj) is JobspecV1
    c = canonical([slot({"type": "core", "count": 1})])
    c["version"] = 2
    ok, obj = validate_jobspec(c)
    assert type(obj) is Jobspec
    with pytest.raises(JobspecError, match="version must be 1"):
        validate_jobspec(c, require_version=1)
    ok, obj = validate_jobspec(JobspecV1.from_dict(d))
    assert obj.jobspec == d
    with pytest.raises(OSError) as info:
        validate_jobspec(None)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        validate_jobspec(5)
    with pytest.raises(JobspecError, match="invalid jobspec JSON"):
        validate_jobspec("{not json")
    with pytest.raises(JobspecError, match="must be a JSON object"):
        validate_jobspec("[1, 2]")


# -------------------------------------------------------------- model


def test_model_roundtrip_and_typed_access():
    js = JobspecV1.from_command(["app", "-x"], num_tasks=4, cores_per_task=2, num_nodes=2,
                                gpus_per_task=1, environment={"A": "1"}, duration=60, name="n",
                                queue="q")
    js.setattr("dependencies", [{"scheme": "afterok", "value": "fNH", "extra": 1}])
    js.setattr("preemptible-after", 30.0)
    js.setattr("user.tag", "t")
    m = js.model()
    assert isinstance(m, JobspecModel)
    node = m.resources[0]
    assert node.type == "node" and node.count == 2 and node.with_[0].label == "task"
    assert [r.type for r in m.walk()] == ["node", "slot", "core", "gpu"]
    s = m.attributes.system
    assert s.duration == 60.0 and s.job_name == "n" and s.queue == "q"
    assert s.preemptible_after == 30.0
    assert s.dependencies[0].scheme == "afterok" and s.dependencies[0].extra == {"extra": 1}
    assert m.attributes.user == {"tag": "t"}
    assert m.tasks[0].count.per_slot == 1 and m.tasks[0].command == ["app", "-x"]
    assert m.to_dict() == js.jobspec
    assert JobspecV1.from_model(m).jobspec == js.jobspec
    m2 = JobspecModel.from_dict(js.jobspec, v1=True)
    assert m2 == m


def test_model_canonical_roundtrip():
    d = canonical([{"type": "cluster", "count": 1, "id": "c0", "requires": ["x"], "with": [
        {"type": "node", "count": {"min": 2, "max": 4}, "with": [
            slot({"type": "core", "count": "1-4:1:+"})]}]}],
        count={"per_resource": {"type": "core", "count": 1}})
    m = JobspecModel.from_dict(d)
    cluster = m.resources[0]
    assert cluster.extra == {"requires": ["x"]} and cluster.id == "c0"
    assert cluster.with_[0].count == CountRange(min=2, max=4)
    assert cluster.with_[0].min_count == 2
    assert m.tasks[0].count.per_resource.type == "core"
    assert m.to_dict() == d


# ------------------------------------------ property tests (hypothesis)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8)
small = st.integers(min_value=1, max_value=64)
env_values = st.one_of(st.none(), st.text(max_size=10))


@st.composite
def v1_jobspecs(draw):
    inner = [{"type": "core", "count": draw(small)}]
    if draw(st.booleans()):
        inner.append({"type": "gpu", "count": draw(st.integers(0, 8))})
    if draw(st.booleans()):
        inner.reverse()
    label = draw(names)
    slot_ = {"type": "slot", "count": draw(small), "label": label, "with": inner}
    if draw(st.booleans()):
        top = {"type": "node", "count": draw(small), "with": [slot_]}
        if draw(st.booleans()):
            top["exclusive"] = draw(st.booleans())
    else:
        top = slot_
    count = draw(st.sampled_from([{"per_slot": 1}, {"total": draw(small)}]))
    system = {"duration": draw(st.one_of(st.integers(0, 10**6),
                                         st.floats(0, 1e9, allow_nan=False)))}
    if draw(st.booleans()):
        system["environment"] = draw(st.dictionaries(names, env_values, max_size=4))
    if draw(st.booleans()):
        system["cwd"] = "/" + draw(names)
    if draw(st.booleans()):
        system["queue"] = draw(names)
    if draw(st.booleans()):
        system["job"] = {"name": draw(names)}
    if draw(st.booleans()):
        system["shell"] = {"options": {draw(names): draw(st.integers())}}
    attrs_ = {"system": system}
    if draw(st.booleans()):
        attrs_["user"] = draw(st.dictionaries(names, st.integers(), max_size=3))
    cmd = draw(st.lists(st.text(max_size=6), min_size=1, max_size=4))
    return {"version": 1, "resources": [top],
            "tasks": [{"command": cmd, "slot": label, "count": count}], "attributes": attrs_}


@settings(max_examples=150, deadline=None)
@given(v1_jobspecs())
def test_property_valid_v1_roundtrips(d):
    js = JobspecV1.from_dict(d)
    again = JobspecV1.loads(js.dumps())
    assert again.jobspec == d
    assert JobspecModel.from_dict(d, v1=True).to_dict() == d
    c = js.counts()
    assert c.ncores == js.resource_counts()["core"]
    assert c.ngpus == js.resource_counts()["gpu"]


@settings(max_examples=150, deadline=None)
@given(v1_jobspecs(), st.sampled_from(["resources", "tasks", "attributes", "version"]),
       st.one_of(st.none(), st.integers(-3, 0), st.text(max_size=3), st.just([]), st.just({})))
def test_property_corrupted_v1_is_rejected_cleanly(d, key, junk):
    d[key] = junk
    with pytest.raises(JobspecError):
        JobspecV1.from_dict(d)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 64), st.integers(1, 8), st.one_of(st.none(), st.integers(0, 4)),
       st.one_of(st.none(), st.integers(1, 64)), st.booleans())
def test_property_from_command_always_valid(ntasks, cores, gpus, nodes, exclusive):
    kw = dict(num_tasks=ntasks, cores_per_task=cores, gpus_per_task=gpus, num_nodes=nodes,
              exclusive=exclusive, environment={})
    if (nodes is not None and nodes > ntasks) or (exclusive and nodes is None):
        with pytest.raises(ValueError):
            JobspecV1.from_command(["a"], **kw)
        return
    js = JobspecV1.from_command(["a"], **kw)
    c = js.counts()
    assert c.ntasks == ntasks
    assert c.nslots >= ntasks and c.slot_size == cores
    assert c.nnodes == (nodes or 0)
    JobspecV1.loads(js.dumps())
