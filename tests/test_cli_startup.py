"""What a short command pays before it does anything: `flux run true` must not import
modules it does not need (each costs every invocation milliseconds), and its exit
skips the interpreter's teardown without losing output, exit codes or atexit work."""

from __future__ import annotations

import subprocess
import sys

from conftest import FLUX

# Modules that used to be imported on every `flux run`: typing (annotations only),
# importlib.metadata (the command table is cached),
# attrs/yaml (the jobspec classes are plain dicts until asked for).
NOT_ON_THE_RUN_PATH = ("typing", "importlib.metadata", "attr", "yaml")


def imported_modules(stderr: str) -> set[str]:
    mods = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip())
    return mods


def test_flux_run_imports_only_what_it_needs(instance):
    instance.flux("run", "true", check=True)  # the command table cache is written once
    r = subprocess.run([sys.executable, "-X", "importtime", FLUX, "run", "true"],
                       env=instance.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    mods = imported_modules(r.stderr)
    assert "flux.handle" in mods  # the parse is right: it sees the modules run needs
    assert not mods & set(NOT_ON_THE_RUN_PATH), sorted(mods & set(NOT_ON_THE_RUN_PATH))


def test_fast_exit_keeps_output_exit_code_and_atexit(instance, tmp_path):
    r = instance.flux("run", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout) == (3, "out\n")
    assert "err\n" in r.stderr and "exit code 3" in r.stderr
    # atexit handlers still run (cli() exits through them before skipping teardown)
    marker = tmp_path / "atexit"
    code = ("import atexit, sys; sys.argv = ['flux', 'run', 'true']\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
            "from flux.cmd.main import cli; cli()")
    r = subprocess.run([sys.executable, "-c", code], env=instance.env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert marker.read_text() == "ran"


def test_fast_exit_on_usage_error_keeps_code_and_message(instance):
    r = instance.flux("run", "--bogus-option", "true")
    assert r.returncode == 2
    assert "--bogus-option" in r.stderr
