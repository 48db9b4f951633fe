"""The `jobspec` ingest validator (group `flux.ingest`).

Every submitted jobspec is checked against the jobspec V1 rules (RFC 25; SPEC 2):
structure, the four V1 resource shapes, resource types node/slot/core/gpu, positive
counts, one task with a non-empty command, and a finite `attributes.system.duration`.
The message names the problem and where it is, e.g.
``invalid jobspec: resources[0].with[0].count must be >= 1 for core, not 0``.

It runs for every job, so it validates the dict the ingest service already decoded
(no re-parsing, no model objects) with the hand-written checks of
`flux.core.job.jobspec.validate`, the same function behind `flux.job.validate_jobspec`.

Config (optional), for instances whose scheduler takes canonical jobspecs (RFC 14)::

    [ingest.jobspec]
    require-version = 1      # default; "any" accepts canonical jobspecs too
"""

from __future__ import annotations

from typing import Any

from flux.core.hookspecs import hookimpl
from flux.core.job.jobspec import JobspecError, validate

_conf_cache: tuple[Any, bool] | None = None  # (config object, v1 required)


def _v1_required(config: dict) -> bool:
    """Whether V1 rules apply; the instance config is fixed for a broker, so it is read once."""
    global _conf_cache
    if _conf_cache is not None and _conf_cache[0] is config:
        return _conf_cache[1]
    section = ((config or {}).get("ingest") or {}).get("jobspec") or {}
    want = section.get("require-version", 1)
    if want in (1, "1"):
        v1 = True
    elif want in ("any", 0, "0"):
        v1 = False
    else:
        raise ValueError(f"ingest.jobspec.require-version must be 1 or \"any\", not {want!r} "
                         "(fix the instance configuration)")
    _conf_cache = (config, v1)
    return v1


# tryfirst: the other validators may then assume a well-formed jobspec
@hookimpl(tryfirst=True)
def ingest_validate(jobspec: dict, config: dict) -> None:
    """Raise ValueError naming the first problem unless `jobspec` is valid."""
    try:
        validate(jobspec, v1=_v1_required(config))
    except JobspecError as exc:
        raise ValueError(f"invalid jobspec: {exc}") from None
