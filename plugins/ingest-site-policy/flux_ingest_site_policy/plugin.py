"""The `site-policy` ingest plugin (group `flux.ingest`): reject jobs by the site's rules.

Each rule is one `[[ingest.site-policy.rule]]` table; a job must pass every rule that
applies to it. A refusal answers the submitter with the rule's `message` (or a
generated one saying what is wrong) followed by the rule's name::

    [[ingest.site-policy.rule]]
    name = "queues"
    allowed-queues = ["batch", "debug"]   # the job must name one of these queues
    message = "submit to the batch or debug queue"

    [[ingest.site-policy.rule]]
    name = "short-debug"
    queues = ["debug"]                    # scope: only jobs in these queues (default all)
    max-duration = "30m"                  # FSD; a job asking for no limit is refused too

    [[ingest.site-policy.rule]]
    forbidden-attributes = ["system.exec.test", "user.secret"]  # paths under `attributes`

    [[ingest.site-policy.rule]]
    guest-max-urgency = 12                # guests (not the instance owner) may ask 0..12

A job is refused like this::

    flux-submit: duration 1h exceeds 30m for queue debug (site policy rule 'short-debug')

A malformed table rejects every job with a message naming the key, rather than
silently enforcing nothing. Without `[ingest.site-policy]` the plugin does nothing.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from flux.core.config import parsed_once
from flux.core.hookspecs import hookimpl
from flux.core.util.fsd import format_fsd, parse_fsd

RULE_KEYS = {"name", "message", "queues", "allowed-queues", "max-duration",
             "forbidden-attributes", "guest-max-urgency"}
CHECK_KEYS = RULE_KEYS - {"name", "message", "queues"}


class ConfigError(ValueError):
    def __init__(self, msg: str):
        super().__init__(f"instance configuration error: {msg}")


@attrs.define(slots=True, frozen=True)
class Rule:
    name: str
    message: str | None = None
    queues: frozenset[str] | None = None  # scope; None = every job
    allowed_queues: tuple[str, ...] | None = None
    max_duration: float | None = None
    forbidden: tuple[tuple[str, ...], ...] = ()
    guest_max_urgency: int | None = None

    def applies(self, queue: Any) -> bool:
        return self.queues is None or queue in self.queues

    def violation(self, jobspec: dict, system: dict, userid: int, urgency: int,
                  owner: int) -> str | None:
        """What is wrong with the job under this rule, or None."""
        queue = system.get("queue")
        if self.allowed_queues is not None and queue not in self.allowed_queues:
            asked = f"queue '{queue}'" if queue is not None else "no queue"
            return f"{asked} is not allowed here (allowed: {', '.join(self.allowed_queues)})"
        if self.max_duration is not None:
            d = system.get("duration", 0)
            if isinstance(d, int | float) and not isinstance(d, bool) and (
                    d == 0 or d > self.max_duration):
                where = f" for queue {queue}" if queue is not None else ""
                asked = "unlimited duration" if d == 0 else f"duration {format_fsd(d)}"
                return f"{asked} exceeds {format_fsd(self.max_duration)}{where}"
        attributes = jobspec.get("attributes")
        for path in self.forbidden:
            if _has(attributes, path):
                return f"attribute {'.'.join(path)} is not allowed"
        if self.guest_max_urgency is not None and userid != owner \
                and urgency > self.guest_max_urgency:
            return (f"urgency {urgency} is above {self.guest_max_urgency}, the maximum for"
                    " users other than the instance owner")
        return None


def _has(d: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return False
        d = d[key]
    return True


def _strings(v: Any, key: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise ConfigError(f"{key} must be an array of non-empty strings, not {v!r}")
    return tuple(v)


def _rule(i: int, t: Any) -> Rule:
    where = f"ingest.site-policy.rule[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table, not {t!r}")
    unknown = sorted(set(t) - RULE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}"
                          f" (known: {', '.join(sorted(RULE_KEYS))})")
    if not set(t) & CHECK_KEYS:
        raise ConfigError(f"{where} checks nothing (give one of {', '.join(sorted(CHECK_KEYS))})")
    name = t.get("name", f"rule {i}")
    msg = t.get("message")
    for key, v in (("name", name), ("message", msg)):
        if v is not None and (not isinstance(v, str) or not v):
            raise ConfigError(f"{where}.{key} must be a non-empty string, not {v!r}")
    queues = frozenset(_strings(t["queues"], f"{where}.queues")) if "queues" in t else None
    allowed = _strings(t["allowed-queues"], f"{where}.allowed-queues") \
        if "allowed-queues" in t else None
    maxdur = None
    if "max-duration" in t:
        try:
            maxdur = parse_fsd(t["max-duration"])
        except ValueError as exc:
            raise ConfigError(f"{where}.max-duration: {exc}") from None
        if math.isinf(maxdur) or maxdur == 0:
            maxdur = None  # unlimited
    forbidden = tuple(tuple(p.split(".")) for p in _strings(t["forbidden-attributes"],
                                                             f"{where}.forbidden-attributes")) \
        if "forbidden-attributes" in t else ()
    gmu = t.get("guest-max-urgency")
    if gmu is not None and (isinstance(gmu, bool) or not isinstance(gmu, int) or not 0 <= gmu <= 31):
        raise ConfigError(f"{where}.guest-max-urgency must be an integer 0-31, not {gmu!r}")
    return Rule(name=name, message=msg, queues=queues, allowed_queues=allowed,
                max_duration=maxdur, forbidden=forbidden, guest_max_urgency=gmu)


def parse_config(config: dict) -> tuple[Rule, ...]:
    ingest = (config or {}).get("ingest", {})
    if not isinstance(ingest, dict):
        raise ConfigError(f"ingest must be a table, not {ingest!r}")
    table = ingest.get("site-policy")
    if table is None:
        return ()
    if not isinstance(table, dict):
        raise ConfigError(f"ingest.site-policy must be a table, not {table!r}")
    unknown = sorted(set(table) - {"rule"})
    if unknown:
        raise ConfigError(f"ingest.site-policy: unknown key(s) {', '.join(unknown)} (rules are"
                          " [[ingest.site-policy.rule]] tables)")
    rules = table.get("rule", [])
    if not isinstance(rules, list):
        raise ConfigError("ingest.site-policy.rule must be an array of tables"
                          " ([[ingest.site-policy.rule]])")
    return tuple(_rule(i, t) for i, t in enumerate(rules))


# parsed once per configuration object (the broker's config is fixed while it runs)
rules_of = parsed_once(parse_config, ConfigError)


@hookimpl
def ingest_validate(jobspec: dict, userid: int, urgency: int, config: dict,
                    instance: Any) -> None:
    rules = rules_of(config)
    if not rules:
        return
    attributes = jobspec.get("attributes")
    system = attributes.get("system") if isinstance(attributes, dict) else None
    if not isinstance(system, dict):
        system = {}
    owner = getattr(instance, "owner", userid)
    for rule in rules:
        if not rule.applies(system.get("queue")):
            continue
        why = rule.violation(jobspec, system, userid, urgency, owner)
        if why is not None:
            raise ValueError(f"{rule.message or why} (site policy rule '{rule.name}')")
