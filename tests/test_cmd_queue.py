"""flux queue: enable/disable submission, start/stop scheduling, drain, idle, named queues."""

from __future__ import annotations

import subprocess

import pytest

TEST_EXEC = "--setattr=system.exec.test.run_duration=0.01s"


@pytest.fixture
def inst(make_instance):
    return make_instance(1)


def test_status_enable_disable(inst):
    r = inst.flux("queue", "status", check=True)
    assert r.stdout == "Job submission is enabled\nScheduling is started\n"
    r = inst.flux("queue", "disable", "-m", "maintenance window", check=True)
    assert r.stdout == "Job submission is disabled: maintenance window\n"
    r = inst.flux("submit", "true")
    assert r.returncode == 1 and "job submission is disabled: maintenance window" in r.stderr
    assert inst.flux("queue", "disable", check=True).stdout == \
        "Job submission is disabled: disabled by administrator\n"
    assert inst.flux("queue", "enable", check=True).stdout == "Job submission is enabled\n"
    assert inst.flux("submit", TEST_EXEC, "true").returncode == 0
    assert inst.flux("queue", "enable", "--quiet", check=True).stdout == ""


def test_stop_holds_jobs_start_releases_them(inst):
    r = inst.flux("queue", "stop", "-m", "hold on", check=True)
    assert r.stdout == "Scheduling is stopped: hold on\n"
    jobid = inst.flux("submit", TEST_EXEC, "true", check=True).stdout.strip()
    inst.flux("job", "wait-event", jobid, "priority", check=True)
    r = inst.flux("job", "wait-event", "-t", "0.5", jobid, "alloc")
    assert r.returncode == 1 and "timeout" in r.stderr  # not scheduled while stopped
    r = inst.flux("queue", "status", "-v", check=True)
    assert "Scheduling is stopped: hold on" in r.stdout and "1 alloc requests queued" in r.stdout
    assert inst.flux("queue", "start", check=True).stdout == "Scheduling is started\n"
    assert inst.flux("job", "status", jobid).returncode == 0


def test_drain_and_idle(inst):
    r = inst.flux("queue", "drain", "--timeout=5s")
    assert r.returncode == 0
    assert inst.flux("queue", "idle", check=True).stdout == "0 jobs\n"
    assert inst.flux("queue", "idle", "--quiet", check=True).stdout == ""
    held = inst.flux("submit", "--urgency=hold", "true", check=True).stdout.strip()
    r = inst.flux("queue", "drain", "--timeout=0.2s")
    assert r.returncode == 1 and "flux-queue: drain: timeout" in r.stderr
    assert inst.flux("queue", "idle", check=True).stdout == "1 jobs\n"
    # drain returns as soon as the last job is gone
    proc = subprocess.Popen(["flux", "queue", "drain"], env=inst.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    inst.flux("cancel", held, check=True)
    assert proc.wait(timeout=60) == 0
    r = inst.flux("queue", "idle", "--timeout=bogus")
    assert r.returncode == 1 and "--timeout" in r.stderr


def test_errors(inst):
    r = inst.flux("queue", "status", "nosuch")
    assert r.returncode == 1 and "'nosuch' is not a valid queue" in r.stderr
    r = inst.flux("queue")
    assert r.returncode == 1
    r = inst.flux("queue", "list", check=True)
    assert r.stdout.splitlines() == ["EN ST", " ✔  ✔"]


def test_named_queues(make_instance):
    inst = make_instance(1, conf=["queues.batch={}", "queues.debug={}"])
    r = inst.flux("queue", "status", check=True)
    assert "batch: Job submission is enabled" in r.stdout and "debug: Scheduling is started" in r.stdout
    r = inst.flux("queue", "stop")
    assert r.returncode == 1 and "Named queues are defined. Specify queues or use --all." in r.stderr
    r = inst.flux("queue", "stop", "debug", check=True)
    assert r.stdout == "debug: Scheduling is stopped\n"
    r = inst.flux("queue", "disable", "-m", "closed", "batch", check=True)
    r = inst.flux("submit", "-q", "batch", "true")
    assert r.returncode == 1 and "job submission to batch is disabled: closed" in r.stderr
    jobid = inst.flux("submit", "-q", "debug", TEST_EXEC, "true", check=True).stdout.strip()
    inst.flux("job", "wait-event", jobid, "priority", check=True)
    assert inst.flux("job", "wait-event", "-t", "0.3", jobid, "alloc").returncode == 1
    inst.flux("queue", "start", "--all", check=True)
    inst.flux("queue", "enable", "--all", check=True)
    assert inst.flux("job", "status", jobid).returncode == 0
    r = inst.flux("queue", "list", "--ascii", check=True)
    assert r.stdout.splitlines()[1:] == ["batch     y  y", "debug     y  y"]
