"""The `site-policy` ingest plugin (plugins/ingest-site-policy): rules from
`[[ingest.site-policy.rule]]`, each refusal with the rule's message, on a real instance."""

from __future__ import annotations

import os
import subprocess

import pytest
from flux_ingest_site_policy.plugin import ConfigError, parse_config

GUEST = 65534  # nobody

RULES = """
[queues.batch]
[queues.debug]
[queues.secret]

[[ingest.site-policy.rule]]
name = "queues"
allowed-queues = ["batch", "debug"]
message = "submit to the batch or debug queue"

[[ingest.site-policy.rule]]
name = "short-debug"
queues = ["debug"]
max-duration = "30m"

[[ingest.site-policy.rule]]
name = "no-test-exec"
forbidden-attributes = ["system.exec.test", "user.secret"]

[[ingest.site-policy.rule]]
name = "guest-urgency"
guest-max-urgency = 12
"""


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    from conftest import Instance

    path = tmp_path_factory.mktemp("sp") / "policy.toml"
    path.write_text(RULES)
    i = Instance(1, conf=[str(path), "access.allow-guest-user=true"])
    os.chmod(i.rundir, 0o755)  # let the guest reach the socket
    yield i
    i.stop()


def refused(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0, r.stdout
    return r.stderr.strip()


def test_allowed_queues_with_the_rules_message(inst):
    assert inst.flux("submit", "-q", "batch", "true").returncode == 0
    err = refused(inst.flux("submit", "-q", "secret", "true"))
    assert err.endswith("submit to the batch or debug queue (site policy rule 'queues')")


def test_duration_limit_per_queue(inst):
    assert inst.flux("submit", "-q", "debug", "-t", "30m", "true").returncode == 0
    err = refused(inst.flux("submit", "-q", "debug", "-t", "1h", "true"))
    assert err.endswith("duration 1h exceeds 30m for queue debug (site policy rule 'short-debug')")
    err = refused(inst.flux("submit", "-q", "debug", "true"))  # no limit asked: unlimited
    assert "unlimited duration exceeds 30m" in err
    # the rule is scoped to the debug queue
    assert inst.flux("submit", "-q", "batch", "-t", "2h", "true").returncode == 0


def test_forbidden_attributes(inst):
    err = refused(inst.flux("submit", "-q", "batch", "--setattr=user.secret=1", "true"))
    assert err.endswith("attribute user.secret is not allowed (site policy rule 'no-test-exec')")
    assert inst.flux("submit", "-q", "batch", "--setattr=user.fine=1", "true").returncode == 0


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to submit as a guest user")
def test_guest_urgency_limit(inst):
    from flux.job import JobspecV1
    from guest import guest_submit

    js = JobspecV1.from_command(["true"])
    js.setattr("system.queue", "batch")
    ok = guest_submit(inst.uri, GUEST, js, urgency=12)
    assert ok[0] == "ok" and ok[1]["id"] > 0, ok
    err = guest_submit(inst.uri, GUEST, js, urgency=14)
    assert err[0] == "err" and err[2] == (
        "urgency 14 is above 12, the maximum for users other than the instance"
        " owner (site policy rule 'guest-urgency')")
    # the core refuses guests above 16 whatever the site says
    err = guest_submit(inst.uri, GUEST, js, urgency=20)
    assert err[0] == "err" and "urgency above 16" in err[2]
    # the owner is not limited by the guest rule
    assert inst.flux("submit", "-q", "batch", "--urgency=20", "true").returncode == 0


def test_config_errors_name_the_key():
    assert parse_config({}) == ()
    for bad, text in [
        ({"rule": {"allowed-queues": ["a"]}}, "must be an array of tables"),
        ({"rule": [{"name": "x"}]}, "rule[0] checks nothing"),
        ({"rule": [{"allowed-queues": "batch"}]}, "rule[0].allowed-queues must be an array"),
        ({"rule": [{"max-duration": "forever"}]}, "rule[0].max-duration"),
        ({"rule": [{"guest-max-urgency": 40}]}, "rule[0].guest-max-urgency must be an integer 0-31"),
        ({"rule": [{"allowed-queue": ["a"]}]}, "unknown key(s) allowed-queue"),
        ({"rules": []}, "unknown key(s) rules"),
    ]:
        with pytest.raises(ConfigError) as ei:
            parse_config({"ingest": {"site-policy": bad}})
        assert text in str(ei.value)


def test_bad_config_rejects_every_job(make_instance):
    inst = make_instance(1, conf=['ingest.site-policy.rule=[{max-duration="soon"}]'])
    err = refused(inst.flux("submit", "true"))
    assert "ingest.site-policy.rule[0].max-duration" in err
