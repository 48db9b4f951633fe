"""The `[job-manager.prolog]` and `[job-manager.epilog]` tables (flux-config-job-manager(5)).

    [job-manager.prolog]
    command = ["/etc/flux/prolog.sh"]  # array of strings (a string is split like a shell)
    per-rank = false                   # true: run on every rank of the job, else rank 0
    timeout = "30m"                    # FSD; "0" or "infinity" disables (epilog: disabled)
    kill-timeout = 10                  # seconds between SIGTERM and SIGKILL
    cancel-on-exception = true         # a fatal job exception kills a running prolog

    [exec]
    imp = "/usr/libexec/flux/flux-imp" # multi-user: default command is `IMP run prolog`

With `exec.imp` set and no `command`, the command is `[imp, "run", "prolog"]` (or
`epilog`): the IMP runs the script it is configured with, as root. Without an IMP a
`command` is required and runs as the instance owner.
"""

from __future__ import annotations

import math
import shlex
from typing import Any

import attrs
from flux.core.util.fsd import parse_fsd

KINDS = ("prolog", "epilog")
DEFAULT_TIMEOUT = {"prolog": 1800.0, "epilog": 0.0}  # 0 = none
KNOWN_KEYS = {"command", "per-rank", "timeout", "kill-timeout", "cancel-on-exception"}


class ConfigError(ValueError):
    def __init__(self, msg: str):
        super().__init__(f"instance configuration error: {msg}")


@attrs.define(slots=True, frozen=True)
class ActionConfig:
    kind: str  # prolog or epilog
    command: tuple[str, ...]
    per_rank: bool = False
    timeout: float = 0.0  # seconds; 0 = no timeout
    kill_timeout: float = 10.0
    cancel_on_exception: bool = True
    via_imp: bool = False  # the command is the IMP's `run` (scripts run as root)

    @property
    def description(self) -> str:
        return f"job-manager.{self.kind}"


@attrs.define(slots=True, frozen=True)
class PerilogConfig:
    prolog: ActionConfig | None = None
    epilog: ActionConfig | None = None

    def get(self, kind: str) -> ActionConfig | None:
        return self.prolog if kind == "prolog" else self.epilog


def _bool(table: dict, key: str, where: str, default: bool) -> bool:
    v = table.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{where}.{key} must be true or false, not {v!r}")
    return v


def _action(kind: str, table: Any, imp: str | None) -> ActionConfig | None:
    where = f"job-manager.{kind}"
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, not {table!r}")
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}"
                          f" (known: {', '.join(sorted(KNOWN_KEYS))})")
    cmd = table.get("command")
    if cmd is None:
        if not imp:
            raise ConfigError(f"{where}.command is required when exec.imp is not set")
        argv: tuple[str, ...] = (imp, "run", kind)
    elif isinstance(cmd, str):
        try:
            argv = tuple(shlex.split(cmd))
        except ValueError as exc:
            raise ConfigError(f"{where}.command: {exc}") from None
    elif isinstance(cmd, list) and all(isinstance(a, str) for a in cmd):
        argv = tuple(cmd)
    else:
        raise ConfigError(f"{where}.command must be an array of strings, not {cmd!r}")
    if not argv or not argv[0]:
        raise ConfigError(f"{where}.command is empty")
    timeout = DEFAULT_TIMEOUT[kind]
    if "timeout" in table:
        try:
            timeout = parse_fsd(table["timeout"])
        except ValueError as exc:
            raise ConfigError(f"{where}.timeout: {exc}") from None
        if math.isinf(timeout):
            timeout = 0.0
    kt = table.get("kill-timeout", 10)
    if isinstance(kt, bool) or not isinstance(kt, int | float) or kt < 0:
        raise ConfigError(f"{where}.kill-timeout must be a number of seconds >= 0, not {kt!r}")
    return ActionConfig(kind=kind, command=argv, per_rank=_bool(table, "per-rank", where, False),
                        timeout=timeout, kill_timeout=float(kt),
                        cancel_on_exception=_bool(table, "cancel-on-exception", where, True),
                        via_imp=cmd is None)


def parse_config(conf: dict) -> PerilogConfig:
    """The prolog/epilog settings of an instance configuration; ConfigError names a bad key."""
    conf = conf or {}
    jm = conf.get("job-manager", {})
    if not isinstance(jm, dict):
        raise ConfigError(f"job-manager must be a table, not {jm!r}")
    ex = conf.get("exec", {})
    imp = ex.get("imp") if isinstance(ex, dict) else None
    if imp is not None and (not isinstance(imp, str) or not imp):
        raise ConfigError(f"exec.imp must be the path of the IMP, not {imp!r}")
    return PerilogConfig(prolog=_action("prolog", jm.get("prolog"), imp),
                         epilog=_action("epilog", jm.get("epilog"), imp))
