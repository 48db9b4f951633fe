"""Options of the commands that start a child instance (`flux batch`, `flux alloc`):
resources in slots (SPEC 10.1), broker options, and `--conf` for the child.

Built on jobopts (the common submission options and jobspec_create), so every
option of `flux submit` that applies means the same here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from flux.cmd import jobopts


class BatchConfig:
    """The child's configuration, built up by `--conf` options in order.

    Each CONF is a multi-line TOML/JSON text, KEY=VAL (the value read as TOML, else
    kept as a string), the path of a .toml/.json file, or a NAME looked up as
    NAME.toml/NAME.json in $XDG_CONFIG_HOME/flux/config then each of
    $XDG_CONFIG_DIRS/flux/config."""

    def __init__(self) -> None:
        self.config: dict | None = None

    def update(self, arg: str) -> None:
        from flux.core.config import _parse_value, merge, set_dotted
        from flux.core.errors import FluxError

        conf = self.config if self.config is not None else {}
        try:
            if "\n" in arg:
                merge(conf, _parse_text(arg))
            elif os.path.isfile(arg):
                merge(conf, _load(arg))
            elif "=" in arg:
                key, _, val = arg.partition("=")
                set_dotted(conf, key.strip(), _parse_value(val.strip()))
            else:
                path = _find_named(arg)
                if path is None:
                    raise ValueError(f"--conf={arg}: not a file, KEY=VAL, or a named config "
                                     f"(NAME.toml or NAME.json in the flux config path)")
                merge(conf, _load(path))
        except FluxError as exc:
            raise ValueError(f"--conf={arg}: {exc.strerror}") from None
        self.config = conf


def _parse_text(text: str) -> dict:
    import tomllib

    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        try:
            out = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"--conf: neither JSON nor TOML: {exc}") from None
    if not isinstance(out, dict):
        raise ValueError("--conf: the configuration must be a table (object)")
    return out


def _load(path: str) -> dict:
    from flux.core.config import load_file

    return load_file(path)


def _find_named(name: str) -> str | None:
    if "/" in name:
        return None
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    dirs = [home] + (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":")
    for d in dirs:
        for ext in (".toml", ".json"):
            p = os.path.join(d, "flux", "config", name + ext)
            if os.path.isfile(p):
                return p
    return None


class _ConfAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        conf = getattr(namespace, self.dest, None)
        if not isinstance(conf, BatchConfig):
            conf = BatchConfig()
        try:
            conf.update(values)
        except ValueError as exc:
            parser.error(str(exc))
        setattr(namespace, self.dest, conf)


def add_batch_alloc_options(parser: argparse.ArgumentParser) -> None:
    """Resource slots and child-instance options of batch and alloc (SPEC 10.1)."""
    add = parser.add_argument
    add("--conf", metavar="CONF", action=_ConfAction, default=None,
        help="Set configuration for the child instance: multi-line JSON or TOML, "
             "KEY=VAL, a .toml/.json file, or a named config (multiple use OK, merged in order)")
    add("--broker-opts", metavar="OPTS", action="append",
        help="Pass options to the child's brokers (comma separated; multiple use OK)")
    add("--dump", nargs="?", const="flux-{{jobid}}-dump.tgz", metavar="FILE",
        help="Archive the child's KVS on exit (broker attribute content.dump)")
    g = parser.add_argument_group("Resource options (slots)")
    g.add_argument("-n", "--nslots", metavar="N",
                   help="Number of resource slots (required unless -N is given); a slot is "
                        "1 core unless -c/-g say otherwise")
    g.add_argument("-c", "--cores-per-slot", metavar="N", default="1",
                   help="Number of cores per slot (default 1)")
    g.add_argument("-g", "--gpus-per-slot", metavar="N", help="Number of GPUs per slot")
    g.add_argument("-N", "--nodes", metavar="N", help="Distribute slots across N nodes")
    g.add_argument("-x", "--exclusive", action="store_true",
                   help="With -N, allocate nodes exclusively")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="Increase verbosity on stderr (multiple use OK)")


def _int(args: Any, name: str, minimum: int) -> int | None:
    v = getattr(args, name)
    if v is None:
        return None
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise ValueError(f"--{name.replace('_', '-')}: invalid int value '{v}'") from None
    if n < minimum:
        raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}")
    return n


def slots(args: Any) -> dict:
    """The keyword arguments of from_nest_command/from_batch_command for the slot
    options (with -N and no -n: one exclusive slot per node, as flux-core does)."""
    nslots = _int(args, "nslots", 1)
    nodes = _int(args, "nodes", 1)
    exclusive = bool(args.exclusive)
    if nslots is None:
        if nodes is None:
            raise ValueError("Number of slots to allocate must be specified")
        nslots, exclusive = nodes, True
    if nodes is not None and nodes > nslots:
        raise ValueError(f"the number of nodes ({nodes}) cannot exceed the number of "
                         f"slots ({nslots})")
    if exclusive and nodes is None:
        raise ValueError("-x/--exclusive can only be used with -N/--nodes")
    broker_opts = []
    for item in args.broker_opts or []:
        broker_opts.extend(o for o in item.split(",") if o)
    if getattr(args, "dump", None):
        broker_opts.append(f"-Scontent.dump={args.dump}")
    conf = args.conf.config if isinstance(args.conf, BatchConfig) else None
    return {"num_slots": nslots, "cores_per_slot": _int(args, "cores_per_slot", 1),
            "gpus_per_slot": _int(args, "gpus_per_slot", 0), "num_nodes": nodes,
            "exclusive": exclusive, "broker_opts": broker_opts, "conf": conf}


def submit(args: Any, jobspec: Any):
    """Submit the jobspec with the common request options; returns (handle, JobID)."""
    import flux
    from flux.job.submit import submit_async

    fl = jobopts.parse_flags(args.flags)
    h = flux.Flux()
    jobid = submit_async(h, jobspec, urgency=jobopts.parse_urgency(args.urgency),
                         waitable=fl["waitable"], debug=fl["debug"],
                         novalidate=fl["novalidate"]).get_id()
    return h, jobid


def guard(prog: str, fn, *args) -> int:
    """Run a command body: bad input and refused requests become 'prog: message'."""
    try:
        return fn(*args)
    except BrokenPipeError:
        raise  # the reader went away (`| head`): `flux` exits quietly
    except (ValueError, TypeError) as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"{prog}: {exc.strerror or exc}\n")
        return 1
