"""Queue policies (entry-point group `flux.queue_policy`): what a scheduling pass does
with a job that cannot start now.

A pass offers the pending jobs to the resource graph one by one, in the policy's order
(by default: priority, then submit time). A job that fits now starts. For one that does
not, the policy's `blocked()` answers:

- `RESERVE`: hold the earliest time it can start, so that no job after it may delay it,
  then go on with the next job;
- `SKIP`: leave it waiting and go on (later jobs may start if they fit around the
  reservations already held: backfill);
- `STOP`: end the pass; nothing behind it starts (strict order).

A policy is a subclass of `QueuePolicy` registered under its name, e.g. in a
distribution's pyproject.toml:

    [project.entry-points."flux.queue_policy"]
    smallfirst = "my_site.policy:SmallFirst"

Its parameters are integers named in `defaults`; any other name is refused with the
list of the ones it takes. `queue-depth` (every policy has it) bounds how many pending
jobs a pass looks at per turn of the event loop, and how many jobs that cannot start a
pass looks past before it ends.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

GROUP = "flux.queue_policy"
UNLIMITED = 2**31 - 1


class Blocked(enum.Enum):
    RESERVE = "reserve"
    SKIP = "skip"
    STOP = "stop"


@attrs.define(slots=True)
class PassState:
    """What a pass has done so far (a policy reads it in `blocked`)."""

    reservations: int = 0  # reservations held in this pass
    blocked: int = 0  # jobs looked at that could not start


def parse_param(name: str, value: Any) -> int:
    """A policy parameter: a positive integer, or "unlimited"."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "unlimited":
            return UNLIMITED
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name} must be a positive integer or 'unlimited', not '{value}'") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a positive integer or 'unlimited', not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return min(value, UNLIMITED)


class QueuePolicy:
    """Base class of queue policies."""

    name: ClassVar[str] = ""
    #: parameter name -> default; the only parameters the policy accepts
    defaults: ClassVar[dict[str, int]] = {"queue-depth": 32}

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params: dict[str, int] = dict(self.defaults)
        for key, value in (params or {}).items():
            if key not in self.defaults:
                takes = ", ".join(sorted(self.defaults))
                raise ValueError(f"queue policy '{self.name}' has no parameter '{key}' (it takes: {takes})")
            self.params[key] = parse_param(key, value)

    @property
    def queue_depth(self) -> int:
        return self.params["queue-depth"]

    def sort_key(self, job: Any) -> tuple:
        """Order of the queue: higher priority first, then earlier submission."""
        return (-job.priority, job.t_submit, job.id)

    def blocked(self, job: Any, state: PassState) -> Blocked:
        """The job cannot start now: reserve it, skip it, or stop the pass."""
        raise NotImplementedError

    def describe(self) -> str:
        params = ",".join(f"{k}={'unlimited' if v == UNLIMITED else v}"
                          for k, v in sorted(self.params.items()))
        return f"{self.name} ({params})"


def installed() -> list[str]:
    from flux.core.plugins import installed_drivers

    return installed_drivers(GROUP)


def load_queue_policy(name: str, params: Mapping[str, Any] | None = None) -> QueuePolicy:
    """The installed policy `name` with `params`; LookupError lists the installed ones,
    ValueError names a bad parameter."""
    from flux.core.plugins import load_driver

    if not isinstance(name, str) or not name:
        raise LookupError(f"queue policy must be a name (installed: {', '.join(installed()) or 'none'})")
    try:
        cls = load_driver(GROUP, name)
    except LookupError as exc:
        if "failed to load" in str(exc):
            raise
        raise LookupError(f"unknown queue policy '{name}' "
                          f"(installed: {', '.join(installed()) or 'none'})") from None
    if not (isinstance(cls, type) and issubclass(cls, QueuePolicy)):
        raise LookupError(f"queue policy '{name}' is not a QueuePolicy subclass ({cls!r})")
    policy = cls(params)
    if not policy.name:
        policy.name = name
    return policy
