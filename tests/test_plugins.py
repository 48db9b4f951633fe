"""Plugins found by entry point: listing, and bad plugins that must not take a broker down.

tests/data/plugins holds a fake installed distribution, `hflux-testplug 1.2.3`
(a package plus a *.dist-info with entry_points.txt). Putting that folder on
PYTHONPATH makes every broker and `flux` command see its plugins:

  flux.broker  testplug_echo       works: service `testecho` on every rank
  flux.broker  testplug_missing    its module does not exist
  flux.broker  testplug_badimport  raises while imported
  flux.broker  testplug_raises     every hook raises (or, by attribute
                                   testplug.services, returns junk / a service
                                   whose start() fails)
  flux.cmd     testplug-hello      a plugin-provided `flux` subcommand
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from flux.core.hookspecs import ALL_GROUPS, HOOK_GROUPS

DATA = os.path.join(os.path.dirname(__file__), "data", "plugins")
ENV = {"PYTHONPATH": DATA}


def flux_cmd(*args, env=None):
    from conftest import FLUX

    e = dict(os.environ, **(env or {}))
    return subprocess.run([FLUX, *args], capture_output=True, text=True, env=e, timeout=60)


def rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    lines = stdout.splitlines()
    assert lines[0].split() == ["GROUP", "NAME", "DISTRIBUTION", "VERSION", "LOADED"]
    out = {}
    for ln in lines[1:]:
        group, name, dist, ver, loaded = ln.split(None, 4)
        out[(group, name)] = [dist, ver, loaded]
    return out


# ------------------------------------------------------------------ listing
def test_plugins_list_shows_group_name_distribution_version_loaded():
    r = flux_cmd("plugins", "list", env=ENV)
    assert r.returncode == 1  # some plugin does not load
    t = rows(r.stdout)
    assert t[("flux.broker", "testplug_echo")] == ["hflux-testplug", "1.2.3", "yes"]
    assert t[("flux.broker", "testplug_raises")] == ["hflux-testplug", "1.2.3", "yes"]
    assert t[("flux.broker", "testplug_missing")] == [
        "hflux-testplug", "1.2.3",
        "no: ModuleNotFoundError: No module named 'hflux_testplug.no_such_module'"]
    assert t[("flux.broker", "testplug_badimport")] == [
        "hflux-testplug", "1.2.3",
        "no: RuntimeError: testplug_badimport cannot be imported (on purpose)"]
    assert t[("flux.cmd", "testplug-hello")] == ["hflux-testplug", "1.2.3", "yes"]
    assert t[("flux.broker", "builtin")][0] == "hflux"
    assert t[("flux.cmd", "plugins")][2] == "yes"


def test_plugins_list_clean_install_succeeds():
    r = flux_cmd("plugins", "list", "-g", "flux.broker")
    assert r.returncode == 0, r.stdout + r.stderr
    t = rows(r.stdout)
    assert ("flux.broker", "builtin") in t
    assert {g for g, _ in t} == {"flux.broker"}


def test_plugins_groups_and_bad_group():
    r = flux_cmd("plugins", "groups")
    assert r.returncode == 0
    assert [ln.split()[0] for ln in r.stdout.splitlines()] == list(ALL_GROUPS)
    r = flux_cmd("plugins", "list", "-g", "flux.nonsense")
    assert r.returncode == 1
    assert "flux-plugins: unknown group 'flux.nonsense'" in r.stderr


def test_plugin_provided_subcommand():
    r = flux_cmd("testplug-hello", "tester", env=ENV)
    assert (r.returncode, r.stdout) == (0, "hello tester from a plugin command\n")
    r = flux_cmd("testplug-hello")  # without the distribution on the path
    assert r.returncode == 1 and "'testplug-hello' is not a flux command" in r.stderr


# ------------------------------------------------------------ in the broker
def test_bad_plugins_are_named_and_the_broker_keeps_running(make_instance):
    inst = make_instance(2, env=ENV)
    h = inst.handle()
    # the good plugin works on every rank
    for r in (0, 1):
        resp = h.rpc("testecho.hello", {"n": r}, nodeid=r).get()
        assert resp == {"echo": {"n": r}, "rank": r}
    log = inst.flux("dmesg", check=True).stdout
    assert ("plugin testplug_missing (group flux.broker, distribution hflux-testplug 1.2.3) "
            "failed to load: ModuleNotFoundError") in log
    assert ("plugin testplug_badimport (group flux.broker, distribution hflux-testplug 1.2.3) "
            "failed to load: RuntimeError: testplug_badimport cannot be imported") in log
    assert "plugin testplug_raises: broker_services failed: RuntimeError(" in log
    assert "plugin testplug_raises: broker_ready failed: ValueError(" in log
    assert "broker.info[1]: testplug_echo: ready" in log  # rank 1 ran the good hook too
    assert inst.stop() == 0
    # the broker_shutdown hook raised too: named on stderr, exit code unaffected
    assert "plugin testplug_raises: broker_shutdown failed: KeyError(" in inst.stderr
    assert "Traceback" not in inst.stderr


@pytest.mark.parametrize("mode,text", [
    ("bad-return", "plugin testplug_raises: broker_services returned int, not a list of services"),
    ("fail-start", "plugin testplug_raises: service testfailstart failed to start: RuntimeError("),
])
def test_plugin_returning_junk_or_failing_to_start(make_instance, mode, text):
    inst = make_instance(1, env=ENV, setattrs=[f"testplug.services={mode}"])
    h = inst.handle()
    assert text in inst.flux("dmesg", check=True).stdout
    with pytest.raises(OSError) as ei:
        h.rpc("testfailstart.ping", {}).get()  # a service that failed to start is gone
    assert ei.value.errno == errno.ENOSYS
    assert h.rpc("testecho.hello", {}).get()["rank"] == 0


def test_disabled_plugin_is_not_loaded(make_instance):
    inst = make_instance(1, env=ENV, conf=['plugins.disable=["testplug_raises", "testplug_echo"]'])
    h = inst.handle()
    log = inst.flux("dmesg", check=True).stdout
    assert "testplug_raises" not in log
    with pytest.raises(OSError) as ei:
        h.rpc("testecho.hello", {}).get()
    assert ei.value.errno == errno.ENOSYS


# ---------------------------------------------------------------- unit level
@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(DATA)
    import importlib

    importlib.invalidate_caches()
    yield
    for m in [m for m in sys.modules if m.startswith("hflux_testplug")]:
        del sys.modules[m]


def test_load_group_records_failures(on_path):
    from flux.core.plugins import call_each, load_group

    pm, records = load_group("flux.broker", disabled={"testplug_echo"})
    by = {r.name: r for r in records}
    assert by["testplug_missing"].loaded is False
    assert by["testplug_missing"].distribution == "hflux-testplug"
    assert by["testplug_echo"].error == "disabled by config"
    assert by["testplug_raises"].loaded and by["builtin"].loaded

    class FakeBroker:
        attrs = {}

    results = {name: exc for name, _res, exc in call_each(pm, "broker_ready", broker=FakeBroker())}
    assert isinstance(results["testplug_raises"], ValueError)  # collected, not raised


def test_load_driver_errors_name_what_is_installed(on_path):
    from flux.core.plugins import load_driver

    assert load_driver("flux.cmd", "testplug-hello")(["x"]) == 0
    with pytest.raises(LookupError) as ei:
        load_driver("flux.cmd", "no-such-command")
    assert "named 'no-such-command' is installed (installed: " in str(ei.value)
    assert "testplug-hello" in str(ei.value)  # the message lists what is installed


def test_every_hook_group_has_a_spec():
    from flux.core.hookspecs import SPECS

    assert set(HOOK_GROUPS) <= set(SPECS)


def test_jobtap_plugins_a_configuration_does_not_use_are_unregistered():
    """accounting and prolog-epilog stay out of the per-job hooks unless configured."""
    from flux.core.job_manager.jobtap import Jobtap

    class FakeBroker:
        rank = 0

        def __init__(self, conf):
            self.conf = conf
            self.logs = []

        def log(self, level, text):
            self.logs.append(text)

        def log_exception(self, text, exc):
            self.logs.append(f"{text}: {exc}")

    class FakeManager:
        def __init__(self, broker):
            self.broker = broker

    def names(jt):
        return {jt.pm.get_name(p) for p in jt.pm.get_plugins()}

    b = FakeBroker({})
    plain = Jobtap(b, FakeManager(b))
    assert {"accounting", "prolog-epilog"} <= set(plain.idle)
    assert "accounting" not in names(plain) and "dependencies" in names(plain)
    b = FakeBroker({"job-manager": {"prolog": {"command": ["true"]}}})
    with_prolog = Jobtap(b, FakeManager(b))
    assert "prolog-epilog" in names(with_prolog) and "prolog-epilog" not in with_prolog.idle
