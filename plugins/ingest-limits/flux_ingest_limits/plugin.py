"""The `limits` ingest plugin (group `flux.ingest`): site defaults, queues and limits.

Configuration (RFC 33; SPEC 7.5), general and per queue; a queue's `policy` table
overrides the general one key by key::

    [policy.jobspec.defaults.system]
    duration = "1h"          # given to jobs that ask for none (duration 0)
    queue = "batch"          # given to jobs that name no queue

    [policy.limits]
    duration = "8h"          # FSD string; "0" = unlimited
    job-size.max.nnodes = 16 # -1 = unlimited
    job-size.min.ncores = 1

    [queues.batch]
    [queues.debug.policy.limits]
    duration = "30m"

The frobnicator fills in the defaults; the validator checks the queue (once queues
are configured every job must name one of them, or get the default) and the limits.
Messages name the limit, where it is configured, and the requested value, e.g.
``duration 2h exceeds the limit of 30m (queues.debug.policy.limits.duration)``.

A malformed configuration rejects every job with a message naming the bad key,
rather than silently enforcing nothing.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from flux.core.config import parsed_once
from flux.core.hookspecs import hookimpl
from flux.core.job.jobspec import slot_counts
from flux.core.util.fsd import format_fsd, parse_fsd

SIZE_KEYS = ("nnodes", "ncores", "ngpus")
UNLIMITED = -1


class ConfigError(ValueError):
    """The instance configuration is invalid; every job is rejected with this message."""

    def __init__(self, msg: str):
        super().__init__(f"instance configuration error: {msg}")


@attrs.define(slots=True, frozen=True)
class SizeLimit:
    bound: str  # "min" or "max"
    resource: str  # nnodes, ncores, ngpus
    value: int
    source: str  # the config key that set it, for messages


@attrs.define(slots=True)
class Effective:
    """The policy in force for one queue (or for the anonymous queue)."""

    duration: float = 0.0  # 0 = unlimited
    duration_source: str = ""
    default_duration: float = 0.0  # 0 = no default
    sizes: tuple[SizeLimit, ...] = ()


@attrs.define(slots=True)
class Policy:
    queues: dict[str, Effective] | None  # None: no [queues] table (one anonymous queue)
    anonymous: Effective
    default_queue: str | None

    def for_queue(self, name: str | None) -> Effective:
        if name is None or self.queues is None:
            return self.anonymous
        return self.queues.get(name, self.anonymous)

    @property
    def trivial(self) -> bool:
        """Nothing to do for any job (the common case on a personal instance)."""
        a = self.anonymous
        return (self.queues is None and self.default_queue is None and not a.duration
                and not a.default_duration and not a.sizes)


# ----------------------------------------------------------------- parsing


def _table(parent: Any, key: str, where: str) -> dict:
    v = parent.get(key, {}) if isinstance(parent, dict) else {}
    if not isinstance(v, dict):
        raise ConfigError(f"{where}{key} must be a table, not {v!r}")
    return v


def _fsd(value: Any, key: str) -> float:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a Flux Standard Duration string such as \"1h\","
                          f" not {value!r}")
    try:
        seconds = parse_fsd(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return 0.0 if math.isinf(seconds) else seconds


def _parse_policy(policy: dict, prefix: str) -> tuple[float | None, float | None,
                                                       dict[tuple[str, str], int], str | None]:
    """(duration limit, default duration, {(bound, resource): size}, default queue) as set
    in one `policy` table; None where it sets nothing."""
    limits = _table(policy, "limits", f"{prefix}.")
    lp = f"{prefix}.limits"
    duration = _fsd(limits["duration"], f"{lp}.duration") if "duration" in limits else None
    sizes: dict[tuple[str, str], int] = {}
    job_size = _table(limits, "job-size", f"{lp}.")
    for bound, table in job_size.items():
        if bound not in ("min", "max"):
            raise ConfigError(f"{lp}.job-size.{bound}: unknown key (expected min, max)")
        if not isinstance(table, dict):
            raise ConfigError(f"{lp}.job-size.{bound} must be a table, not {table!r}")
        for res, n in table.items():
            key = f"{lp}.job-size.{bound}.{res}"
            if res not in SIZE_KEYS:
                raise ConfigError(f"{key}: unknown key (expected {', '.join(SIZE_KEYS)})")
            if not isinstance(n, int) or isinstance(n, bool) or n < UNLIMITED:
                raise ConfigError(f"{key} must be -1 (unlimited) or an integer >= 0, not {n!r}")
            sizes[(bound, res)] = n
    system = _table(_table(_table(policy, "jobspec", f"{prefix}."), "defaults",
                           f"{prefix}.jobspec."), "system", f"{prefix}.jobspec.defaults.")
    dp = f"{prefix}.jobspec.defaults.system"
    default_duration = (_fsd(system["duration"], f"{dp}.duration")
                        if "duration" in system else None)
    queue = system.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise ConfigError(f"{dp}.queue must be a string, not {queue!r}")
    return duration, default_duration, sizes, queue


def _effective(general: tuple, own: tuple | None, gsrc: str, qsrc: str) -> Effective:
    gdur, gdef, gsizes, _ = general
    eff = Effective()
    dsrc = gsrc
    dur = gdur
    ddef = gdef
    sizes = {k: (v, f"{gsrc}.limits.job-size.{k[0]}.{k[1]}") for k, v in gsizes.items()}
    if own is not None:
        qdur, qdef, qsizes, qqueue = own
        if qqueue is not None:
            raise ConfigError(f"{qsrc}.jobspec.defaults.system.queue: a default queue is set"
                              " in the general policy, not per queue")
        if qdur is not None:
            dur, dsrc = qdur, qsrc
        if qdef is not None:
            ddef = qdef
        for k, v in qsizes.items():
            sizes[k] = (v, f"{qsrc}.limits.job-size.{k[0]}.{k[1]}")
    eff.duration = dur or 0.0
    eff.duration_source = f"{dsrc}.limits.duration"
    eff.default_duration = ddef or 0.0
    eff.sizes = tuple(SizeLimit(b, r, v, src) for (b, r), (v, src) in sorted(sizes.items())
                      if v != UNLIMITED)
    return eff


def parse_config(config: dict) -> Policy:
    """The policy of an instance configuration; ConfigError names a bad key."""
    config = config or {}
    general = _parse_policy(_table(config, "policy", ""), "policy")
    queues_conf = _table(config, "queues", "")
    default_queue = general[3]
    anonymous = _effective(general, None, "policy", "")
    if not queues_conf:
        return Policy(None, anonymous, default_queue)
    queues: dict[str, Effective] = {}
    for name, q in queues_conf.items():
        if not isinstance(q, dict):
            raise ConfigError(f"queues.{name} must be a table, not {q!r}")
        qp = f"queues.{name}.policy"
        queues[name] = _effective(general, _parse_policy(_table(q, "policy", f"queues.{name}."), qp),
                                  "policy", qp)
    if default_queue is not None and default_queue not in queues:
        raise ConfigError(f"policy.jobspec.defaults.system.queue: '{default_queue}' is not a"
                          f" configured queue (queues: {', '.join(sorted(queues))})")
    return Policy(queues, anonymous, default_queue)


# parsed once per configuration object (the broker's config is fixed while it runs)
policy_of = parsed_once(parse_config, ConfigError)


# ------------------------------------------------------------------- hooks


def _system(jobspec: dict) -> dict | None:
    attrs_ = jobspec.get("attributes")
    if not isinstance(attrs_, dict):
        return None
    system = attrs_.get("system")
    return system if isinstance(system, dict) else None


@hookimpl
def ingest_frobnicate(jobspec: dict, config: dict) -> None:
    """Fill in the configured default queue and duration."""
    policy = policy_of(config)
    if policy.trivial:
        return
    system = _system(jobspec)
    if system is None:
        return  # malformed: the jobspec validator says what is wrong
    queue = system.get("queue")
    if queue is None and policy.default_queue is not None:
        system["queue"] = queue = policy.default_queue
    eff = policy.for_queue(queue if isinstance(queue, str) else None)
    if eff.default_duration and system.get("duration", 0) == 0:
        system["duration"] = eff.default_duration


def _check_queue(policy: Policy, queue: Any) -> str | None:
    if policy.queues is None:
        if queue is not None:
            raise ValueError(f"queue '{queue}' does not exist: this instance has no queues configured")
        return None
    names = ", ".join(sorted(policy.queues))
    if queue is None:
        raise ValueError(f"no queue specified and no default queue is configured; "
                         f"choose one of: {names}")
    if not isinstance(queue, str) or queue not in policy.queues:
        raise ValueError(f"queue '{queue}' does not exist; configured queues: {names}")
    return queue


@hookimpl
def ingest_validate(jobspec: dict, config: dict) -> None:
    """Reject a job naming an unknown queue or exceeding the limits."""
    policy = policy_of(config)
    system = _system(jobspec)
    if system is None:
        return
    if policy.trivial:
        if system.get("queue") is not None:
            _check_queue(policy, system["queue"])
        return
    queue = _check_queue(policy, system.get("queue"))
    eff = policy.for_queue(queue)
    if eff.duration:
        d = system.get("duration", 0)
        if isinstance(d, int | float) and not isinstance(d, bool):
            if d == 0 or d > eff.duration:
                asked = "unlimited" if d == 0 else format_fsd(d)
                raise ValueError(f"duration {asked} exceeds the limit of"
                                 f" {format_fsd(eff.duration)} ({eff.duration_source})")
    if eff.sizes:
        try:
            counts = slot_counts(jobspec)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            return  # malformed: the jobspec validator says what is wrong
        have = {"nnodes": counts.nnodes, "ncores": counts.ncores, "ngpus": counts.ngpus}
        for lim in eff.sizes:
            n = have[lim.resource]
            if lim.bound == "max" and n > lim.value:
                raise ValueError(f"requested {lim.resource} ({n}) exceeds the limit of"
                                 f" {lim.value} ({lim.source})")
            if lim.bound == "min" and n < lim.value:
                raise ValueError(f"requested {lim.resource} ({n}) is below the minimum of"
                                 f" {lim.value} ({lim.source})")
