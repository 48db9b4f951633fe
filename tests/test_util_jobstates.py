"""Job states and results (SPEC 4.2-4.4)."""

import pytest
from flux.core.job import states as S


def test_numbers_and_names():
    assert [S.STATES[n] for n in ("NEW", "DEPEND", "PRIORITY", "SCHED", "RUN", "CLEANUP",
                                  "INACTIVE")] == [1, 2, 4, 8, 16, 32, 64]
    assert (S.PENDING, S.RUNNING, S.ACTIVE) == (14, 48, 62)
    assert [S.statetostr(n, "S") for n in S.STATE_NAMES] == list("NDPSRCI")
    assert S.statetostr(S.RUN) == "RUN" and S.statetostr(S.RUN, "l") == "run"
    assert S.statetostr(S.RUN, "s") == "r"
    assert S.statetostr(S.PENDING, "S") == "PD" and S.statetostr(S.RUNNING) == "RUNNING"
    assert S.statetostr(S.ACTIVE, "S") == "A"
    assert S.statetostr(3) == "(unknown)" and S.statetostr(3, "S") == "?"
    assert S.statetostr("sched", "S") == "S"
    assert (S.COMPLETED, S.FAILED, S.CANCELED, S.TIMEOUT) == (1, 2, 4, 8)
    assert [S.resulttostr(r, "S") for r in (1, 2, 4, 8)] == ["CD", "F", "CA", "TO"]
    assert S.resulttostr("timeout") == "TIMEOUT"


def test_parse_case_insensitive():
    assert S.strtostate("depend") == S.strtostate("DEPEND") == S.strtostate("d") == S.DEPEND
    assert S.strtostate("Pending", virtual=True) == S.PENDING
    assert S.strtostate("ru", virtual=True) == S.RUNNING
    with pytest.raises(ValueError, match="pending"):
        S.strtostate("pending")
    assert S.strtoresult("cd") == S.COMPLETED and S.strtoresult("Canceled") == S.CANCELED
    assert S.strtoresult("cancelled") == S.CANCELED
    with pytest.raises(ValueError, match="bogus"):
        S.strtoresult("bogus")


def test_parse_filter():
    assert S.parse_filter("pending,running") == (S.PENDING | S.RUNNING, 0)
    assert S.parse_filter("completed,failed,sched") == (S.SCHED, S.COMPLETED | S.FAILED)
    assert S.parse_filter(["r", "CD"]) == (S.RUN, S.COMPLETED)
    with pytest.raises(ValueError, match="'nope'"):
        S.parse_filter("run,nope")
    assert S.states_in(S.PENDING) == ["DEPEND", "PRIORITY", "SCHED"]


def test_status_abbrev():
    assert S.status_abbrev(S.SCHED) == "S"
    assert S.status_abbrev(S.INACTIVE, S.TIMEOUT) == "TO"


def ev(name, **ctx):
    return {"timestamp": 1.0, "name": name, "context": ctx}


def test_replay_typical_run():
    log = [ev("submit", userid=1, urgency=16, flags=0, version=1), ev("validate"), ev("depend"),
           ev("priority", priority=16), ev("alloc"), ev("start"), ev("finish", status=0),
           ev("release", ranks="all", final=True), ev("free"), ev("clean")]
    seen = []
    state = S.NEW
    for e in log[1:]:
        state = S.next_state(state, e["name"], e["context"])
        seen.append(S.statetostr(state, "S"))
    assert seen == ["D", "P", "S", "R", "R", "C", "C", "C", "I"]
    assert S.replay(log) == S.INACTIVE


def test_replay_rules():
    base = [ev("submit"), ev("validate"), ev("depend"), ev("priority", priority=1)]
    assert S.replay(base) == S.SCHED
    assert S.replay(base + [ev("urgency", urgency=0)]) == S.PRIORITY
    assert S.replay(base + [ev("jobspec-update")]) == S.PRIORITY
    assert S.replay(base + [ev("flux-restart")]) == S.PRIORITY
    assert S.replay(base + [ev("exception", type="cancel", severity=0)]) == S.CLEANUP
    assert S.replay(base + [ev("exception", type="x", severity=1)]) == S.SCHED
    assert S.replay(base[:1] + [ev("exception", type="cancel", severity=0)]) == S.CLEANUP
    assert S.replay(base + [ev("memo", x=1), ev("debug.foo")]) == S.SCHED
    with pytest.raises(ValueError, match="submit"):
        S.replay([ev("validate")])
    with pytest.raises(ValueError):
        S.replay([])


def test_result_of():
    assert S.result_of(0) == S.COMPLETED
    assert S.result_of(256) == S.FAILED
    assert S.result_of(None, [{"type": "cancel", "severity": 0}]) == S.CANCELED
    assert S.result_of(None, [{"type": "timeout", "severity": 0}]) == S.TIMEOUT
    assert S.result_of(0, [{"type": "exec", "severity": 0}]) == S.FAILED
    assert S.result_of(0, [{"type": "x", "severity": 3}]) == S.COMPLETED
    assert S.result_of(36608, [{"type": "other", "severity": 2},
                               {"type": "cancel", "severity": 0}]) == S.CANCELED
    assert S.result_of(None, [{"type": "alloc", "severity": 0}]) == S.FAILED


def test_job_manager_merges_appends_to_one_eventlog_per_commit():
    from flux.core.job_manager.manager import APPEND, _merge_appends

    ops = [{"key": "job.a.eventlog", "flags": APPEND, "raw": b"1\n"},
           {"key": "job.a.J", "flags": 0, "raw": b"J"},
           {"key": "job.b.eventlog", "flags": APPEND, "raw": b"x\n"},
           {"key": "job.a.eventlog", "flags": APPEND, "raw": b"2\n"},
           {"key": "job.b", "flags": 0, "dirent": None},  # a purge: nothing merges across it
           {"key": "job.a.eventlog", "flags": APPEND, "raw": b"3\n"}]
    out = _merge_appends(ops)
    assert [(o["key"], o.get("raw")) for o in out] == [
        ("job.a.eventlog", b"1\n2\n"), ("job.a.J", b"J"), ("job.b.eventlog", b"x\n"),
        ("job.b", None), ("job.a.eventlog", b"3\n")]
    assert ops[0]["raw"] == b"1\n"  # the callers' ops are left as they were
