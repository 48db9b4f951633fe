"""`flux jobs` formatting without a broker: flux.util.OutputFormat extensions, JobInfo's
derived fields, named formats, and `flux jobs --from-stdin` (jobs as JSON lines)."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import datetime

import pytest
from flux.cmd import jobs as cmd
from flux.core.job import states as S
from flux.job.info import JobInfo, JobInfoFormat, get_username, job_fields_to_attrs
from flux.job.JobID import JobID
from flux.util import OutputFormat, UtilConfig, fsd, parse_datetime, parse_fsd
from flux.util.format import UtilFormatter

ME = os.getuid()


class Item:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def run_main(argv, monkeypatch, capsys, lines=()):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(json.dumps(x) + "\n" for x in lines)))
    rc = cmd.main(["--from-stdin", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def job(jobid=1, state=S.RUN, **kw) -> dict:
    d = {"id": jobid, "userid": ME, "urgency": 16, "priority": 16, "t_submit": 1000.0,
         "t_depend": 1000.1, "state": state, "name": "sleep", "ntasks": 2, "nnodes": 1,
         "duration": 0.0}
    if state & (S.RUN | S.CLEANUP | S.INACTIVE):
        d.update(t_run=1001.0, nodelist="node[0-1]", ranks="[0-1]", expiration=0.0)
    if state == S.INACTIVE:
        d.update(t_cleanup=1011.0, t_inactive=1012.0, result=S.COMPLETED, success=True,
                 waitstatus=0, exception_occurred=False)
    d.update(kw)
    return d


# ------------------------------------------------------------- OutputFormat

def test_conversions_and_suffixes():
    f = UtilFormatter()
    assert f.format("{0!F}", 90.0) == "1.5m"
    assert f.format("{0!F:>8h}", 0.0) == "       -"
    assert f.format("{0!H}", 3725.2) == "1:02:05"
    assert f.format("{0!H}", 0.2) == "0:00:01"  # never shown as zero
    assert f.format("{0!P}", 0.5) == "50%" and f.format("{0!P}", 0.001) == "0.10%"
    ts = datetime(2024, 6, 21, 6, 30, 5).timestamp()
    assert f.format("{0!D}", ts) == "2024-06-21T06:30:05"
    assert f.format("{0!D:h}", 0.0) == "-"
    assert f.format("{0!d:%b%d %R::>12}", ts) == " Jun21 06:30"
    assert f.format("{0!d:%H::h}", 0.0) == "-"
    assert f.format("{0:>6h}", "") == "     -"
    assert f.format("{0:<5.5+}", "abcdefgh") == "abcd+"
    assert f.format("{0:<5.5+}", "abc") == "abc  "
    assert f.format("{0:>4d}", "") == "    "  # an empty value in a numeric column
    assert f.format("{0!F}", "") == "" and f.format("{0!H}", "") == ""


def test_fsd():
    assert [fsd(x) for x in (0.0001, 1.5, 45.0, 600.0, 7200.0, 3 * 86400.0, float("inf"))] == \
        ["0s", "1.500s", "45s", "10m", "2h", "3d", "inf"]
    assert parse_fsd("2m") == 120.0 and parse_fsd("inf") == float("inf")
    with pytest.raises(ValueError, match="invalid Flux standard duration"):
        parse_fsd("2x")


def test_parse_datetime():
    now = datetime(2024, 6, 21, 12, 0, 0).astimezone()
    assert parse_datetime("now", now) == now
    assert (now - parse_datetime("-1h", now)).total_seconds() == 3600
    assert (parse_datetime("+30s", now) - now).total_seconds() == 30
    assert parse_datetime("yesterday", now).day == 20
    assert parse_datetime("today 6am", now).hour == 6
    assert parse_datetime("2024-01-02 18:30", now).strftime("%F %R") == "2024-01-02 18:30"
    assert parse_datetime("18:15", now).strftime("%R") == "18:15"
    with pytest.raises(ValueError, match="Invalid datetime"):
        parse_datetime("the day after", now)


def test_output_format_filter_expand_sort():
    heads = {"a": "A", "b": "BBBB", "c": "C"}
    items = [Item(a=3, b="", c="x"), Item(a=1, b="", c="longer-value"), Item(a=2, b="", c="y")]
    fmt = OutputFormat("sort:-a {a:>2} ?:{b:<4} +:{c:<3}", headings=heads)
    assert fmt.sort_keys == [("a", True)] and sorted(fmt.fields) == ["a", "b", "c"]
    newfmt = fmt.filter(items)
    assert newfmt == "sort:-a {a:>2} {c:<12}"
    f2 = OutputFormat(newfmt, headings=heads)
    assert f2.header() == " A C           "
    assert [f2.format(i) for i in f2.sort_items(items)] == \
        [" 3 x           ", " 2 y           ", " 1 longer-value"]
    # a column with a value somewhere stays
    items[0].b = "z"
    assert "{b:<4}" in fmt.filter(items)
    with pytest.raises(ValueError, match="Unknown format field: nope"):
        OutputFormat("{nope}", headings=heads)
    with pytest.raises(ValueError, match="Invalid sort key: nope"):
        fmt.set_sort_keys("a,nope")


def test_print_items(capsys):
    fmt = OutputFormat("{a:>3} ?:{b}", headings={"a": "AAA", "b": "B"})
    fmt.print_items([Item(a=1, b=""), Item(a=2, b="")])
    assert capsys.readouterr().out == "AAA\n  1\n  2\n"


def test_util_config(tmp_path, monkeypatch):
    d = tmp_path / "flux"
    d.mkdir()
    (d / "flux-jobs.toml").write_text('[formats.mine]\nformat = "{id.dec}"\n'
                                      'description = "just ids"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "none"))
    conf = cmd.FluxJobsConfig().load()
    assert conf.get_format_string("mine") == "{id.dec}"
    assert conf.get_format_string("{name}") == "{name}"
    monkeypatch.setenv("FLUX_JOBS_FORMAT_DEFAULT", "mine")
    assert conf.get_format_string("default") == "{id.dec}"
    with pytest.raises(ValueError, match="No such format zzz"):
        conf.get_format_string("zzz")
    (d / "flux-jobs.toml").write_text('[formats.default]\nformat = "{id}"\n')
    with pytest.raises(ValueError, match="override of builtin format 'default'"):
        cmd.FluxJobsConfig().load()
    (d / "flux-jobs.toml").write_text('colors = 1\n')
    with pytest.raises(ValueError, match="invalid key colors"):
        UtilConfig("flux-jobs").load()


# ------------------------------------------------------------------ JobInfo

def test_jobinfo_fields():
    j = JobInfo(job(1234, S.INACTIVE, waitstatus=3 << 8, result=S.FAILED, success=False,
                    annotations={"user": {"uri": "ssh://host/tmp/x/local-0"}}))
    assert isinstance(j.id, JobID) and j.id.dec == "1234"
    assert (j.state, j.state_single, j.status, j.status_abbrev) == \
        ("INACTIVE", "I", "FAILED", "F")
    assert (j.result, j.result_abbrev, j.returncode) == ("FAILED", "F", 3)
    assert j.runtime == pytest.approx(10.0) and j.contextual_time == pytest.approx(10.0)
    assert j.inactive_reason == "Exit 3"
    assert j.uri == "ssh://host/tmp/x/local-0" and j.uri.local == "local:///tmp/x/local-0"
    assert str(j.annotations.sched.t_estimate) == ""  # missing annotations format empty
    d = j.to_dict()
    assert d["id"] == 1234 and d["uri"] == "ssh://host/tmp/x/local-0"
    assert "user" not in d["annotations"] and d["exception"] == {"occurred": False}
    assert "t_remaining" not in d  # zero values are filtered
    assert JobInfo(job(5, S.RUN)).to_dict(filtered=False)["result"] == ""


@pytest.mark.parametrize("kw,info", [
    ({"state": S.PRIORITY}, "priority-wait"),
    ({"state": S.DEPEND, "dependencies": ["after-finish=ƒ2", "singleton"]},
     "depends:after-finish=ƒ2,singleton"),
    ({"state": S.SCHED, "urgency": 0, "priority": 0}, "held"),
    ({"state": S.SCHED, "priority": 0}, "priority-hold"),
    ({"state": S.SCHED}, ""),
    ({"state": S.SCHED, "annotations": {"sched": {"t_estimate": 1.0}}}, "eta:now"),
    ({"state": S.RUN}, "node[0-1]"),
])
def test_contextual_info(kw, info):
    state = kw.pop("state")
    assert JobInfo(job(1, state, **kw)).contextual_info == info


def test_contextual_info_eta_and_times():
    j = JobInfo(job(1, S.SCHED, duration=3600.0,
                    annotations={"sched": {"t_estimate": time.time() + 125}}))
    assert j.contextual_info.startswith("eta:2.0") and j.contextual_info.endswith("m")
    assert j.contextual_time == 3600.0
    r = JobInfo(job(1, S.RUN, t_run=time.time() - 5, expiration=time.time() + 60))
    assert 4 < r.runtime < 60 and 0 < r.t_remaining <= 60


@pytest.mark.parametrize("kw,reason,rc", [
    ({"result": S.CANCELED, "exception_occurred": True, "exception_type": "cancel",
      "exception_severity": 0, "exception_note": "by me", "waitstatus": ""},
     "Canceled: by me", -128),
    ({"result": S.CANCELED, "exception_occurred": True, "exception_type": "cancel",
      "exception_severity": 0, "exception_note": "", "waitstatus": 15},
     "Canceled", -15),
    ({"result": S.FAILED, "exception_occurred": True, "exception_type": "alloc",
      "exception_severity": 0, "exception_note": "no way", "waitstatus": ""},
     "Exception: type=alloc note=no way", 1),
    ({"result": S.FAILED, "waitstatus": 137 << 8}, "Killed", 137),
    ({"result": S.FAILED, "waitstatus": 127 << 8}, "command not found", 127),
    ({"result": S.TIMEOUT, "exception_occurred": True, "exception_type": "timeout",
      "exception_severity": 0, "waitstatus": 142 << 8}, "Timeout", 142),
    ({"result": S.COMPLETED}, "Exit 0", 0),
])
def test_inactive_reason(kw, reason, rc):
    j = JobInfo(job(1, S.INACTIVE, **kw))
    assert j.inactive_reason == reason
    assert j.returncode == rc


def test_fields_to_attrs():
    assert job_fields_to_attrs(["id.f58", "contextual_time"]) == \
        {"state", "t_run", "t_cleanup", "duration"}
    assert job_fields_to_attrs(["sched.reason_pending", "user.x"]) == {"annotations"}
    with pytest.raises(ValueError):
        job_fields_to_attrs(["bogus"])


def test_jobinfoformat_headings():
    f = JobInfoFormat("{id.f58:>12} {annotations.sched.reason_pending} {user.foo} "
                      "{instance.resources.free.ncores}")
    assert f.header() == "       JOBID REASON USER.FOO FREE"


# ------------------------------------------------------- flux jobs --from-stdin

def test_default_format_and_queue_column(monkeypatch, capsys):
    rows = [job(1, S.RUN), job(2, S.SCHED, name="averyveryverylongname", nnodes=""),
            job(3, S.INACTIVE)]
    rc, out, err = run_main([], monkeypatch, capsys, rows)
    lines = out.splitlines()
    assert rc == 0 and lines[0] == "       JOBID USER     NAME       ST NTASKS NNODES     TIME INFO"
    assert lines[1].split()[2:] == ["sleep", "R", "2", "1", lines[1].split()[6], "node[0-1]"]
    assert "averyvery+" in lines[2] and lines[2].split()[-2:] == ["-", "-"]
    assert lines[3].split()[3] == "CD"
    assert lines[1].split()[1] == get_username(ME)
    rows[0]["queue"] = "batch"
    rc, out, err = run_main([], monkeypatch, capsys, rows)
    assert out.splitlines()[0].split()[:3] == ["JOBID", "QUEUE", "USER"]
    assert out.splitlines()[1].split()[1] == "batch"


def test_named_formats_and_options(monkeypatch, capsys):
    rows = [job(1, S.RUN), job(2, S.INACTIVE, t_inactive=datetime(2024, 6, 21, 6, 30).timestamp())]
    rc, out, _ = run_main(["-o", "endreason"], monkeypatch, capsys, rows)
    assert out.splitlines()[0].split() == ["JOBID", "USER", "NAME", "ST", "T_INACTIVE",
                                           "INACTIVE-REASON"]
    assert out.splitlines()[2].endswith("Jun21 06:30 Exit 0")
    rc, out, _ = run_main(["-o", "deps", "-n"], monkeypatch, capsys, rows)
    assert len(out.splitlines()) == 2 and "RUN" in out.splitlines()[0]
    rc, out, _ = run_main(["-o", "long"], monkeypatch, capsys, rows)
    assert "T_REMAINING" in out.splitlines()[0] and "COMPLETED" in out
    rc, out, _ = run_main(["-o", "{id.dec} {ranks}", "--sort=-id"], monkeypatch, capsys,
                          rows)
    assert out.splitlines() == ["JOBID RANKS", "2 [0-1]", "1 [0-1]"]
    rc, out, _ = run_main(["-o", "sort:name {id.dec}", "-n"], monkeypatch, capsys,
                          [job(1, name="b"), job(2, name="a")])
    assert out.splitlines() == ["2", "1"]


def test_format_errors(monkeypatch, capsys):
    rc, out, err = run_main(["-o", "{id} {frobnicity}"], monkeypatch, capsys, [])
    assert rc == 1 and "Error in user format: Unknown format field: frobnicity" in err
    rc, out, err = run_main(["-o", "nosuchformat"], monkeypatch, capsys, [])
    assert rc == 1 and "No such format nosuchformat" in err
    rc, out, err = run_main(["--sort", "nope"], monkeypatch, capsys, [])
    assert rc == 1 and "Invalid sort key: nope" in err
    with pytest.raises(SystemExit) as ei:
        run_main(["-o", "help"], monkeypatch, capsys, [])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for name in ("default", "cute", "long", "deps", "endreason"):
        assert name in out


def test_json_from_stdin(monkeypatch, capsys):
    rc, out, _ = run_main(["--json"], monkeypatch, capsys, [job(7, S.INACTIVE)])
    data = json.loads(out)
    assert data["jobs"][0]["id"] == 7 and data["jobs"][0]["status"] == "COMPLETED"
