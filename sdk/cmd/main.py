"""The `flux` command: dispatches `flux CMD ...` to the `flux.cmd` entry point CMD.

The entry-point table is cached (keyed on the mtimes of sys.path entries) so a
command does not pay for scanning every installed distribution on each run.
"""

from __future__ import annotations

import json
import os
import sys

USAGE = "usage: flux [--help] COMMAND [ARGS...]\n"


def _cache_path() -> str:
    return os.path.join(sys.prefix, ".flux-cmd-cache.json")


def _fingerprint() -> list:
    fp = []
    for p in sys.path:
        try:
            fp.append([p, os.stat(p).st_mtime_ns])
        except OSError:
            continue
    return fp


def command_table() -> dict[str, str]:
    """{name: "module:attr"} for every `flux.cmd` entry point."""
    path = _cache_path()
    fp = _fingerprint()
    try:
        with open(path) as f:
            cached = json.load(f)
        if cached.get("fingerprint") == fp:
            return cached["commands"]
    except (OSError, ValueError):
        pass
    from importlib.metadata import entry_points

    table = {}
    for ep in entry_points(group="flux.cmd"):
        table.setdefault(ep.name, ep.value)
    try:
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"fingerprint": fp, "commands": table}, f)
        os.replace(tmp, path)
    except OSError:
        pass
    return table


def load_command(value: str):
    import importlib

    mod, _, attr = value.partition(":")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def print_help(table: dict[str, str]) -> None:
    sys.stdout.write(USAGE + "\ncommands:\n")
    for name in sorted(table):
        sys.stdout.write(f"  {name}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    table = command_table()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_help(table)
        return 0 if argv else 1
    name = argv[0]
    if name == "mini" and len(argv) > 1:
        sys.stderr.write("⚠️ flux mini is deprecated, use flux <cmd> ⚠️\n")
        argv = argv[1:]
        name = argv[0]
    if name == "version" or name == "--version":
        from flux.core.broker.broker import VERSION

        print(f"commands:    \t\t{VERSION}")
        return 0
    value = table.get(name)
    if value is None:
        sys.stderr.write(f"flux: '{name}' is not a flux command. See 'flux --help'\n")
        return 1
    try:
        fn = load_command(value)
    except Exception as exc:  # noqa: BLE001 - a broken plugin command is named, not a traceback
        sys.stderr.write(f"flux: command '{name}' ({value}) failed to load: {exc}\n")
        return 1
    try:
        rc = fn(argv[1:])
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    sys.stdout.flush()
    return rc if isinstance(rc, int) else 0


def cli() -> None:
    """The `flux` console script: main(), then an exit without the interpreter's
    teardown (a tenth of a short `flux run`)."""
    from flux.core.util.fastexit import exit_now

    try:
        rc = main()
    except SystemExit as exc:  # argparse errors, sys.exit() in a command
        code = exc.code
        if code is None or isinstance(code, int):
            exit_now(code or 0)
        raise
    exit_now(rc)


if __name__ == "__main__":
    cli()
