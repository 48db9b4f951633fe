"""The `feasibility` ingest validator (group `flux.ingest`).

Asks the scheduler whether a request could ever be satisfied on this instance's
resources with the `feasibility.check {jobspec}` RPC (RFC 27; SPEC 7.2) and rejects
the job with the scheduler's reason if not, e.g. ``unsatisfiable request: requested
64 slots of 1 cores but the instance has 32 cores on 1 nodes``. A scheduler that
offers no `feasibility` service (ENOSYS) accepts everything, as in flux-core.

The hook returns an awaitable; the ingest service awaits it after the cheaper local
validators (this one is `trylast`), so a job they already rejected sends no RPC.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Generator
from typing import Any

from flux.core.errors import FluxError
from flux.core.hookspecs import hookimpl


class FeasibilityCheck:
    """Awaitable: the RPC is sent only when awaited (never, if an earlier plugin rejected)."""

    __slots__ = ("jobspec", "broker")

    def __init__(self, jobspec: dict, broker: Any):
        self.jobspec = jobspec
        self.broker = broker

    def __await__(self) -> Generator[Any, None, None]:
        return self._check().__await__()

    async def _check(self) -> None:
        try:
            # in-process RPC: the jobspec is passed by reference, not serialized
            await self.broker.rpc("feasibility.check", {"jobspec": self.jobspec})
        except FluxError as exc:
            if exc.errno == errno.ENOSYS:
                return  # no feasibility service: accept
            text = exc.strerror or f"feasibility check failed: {os.strerror(exc.errno)}"
            raise FluxError(exc.errno, text) from None


@hookimpl(trylast=True)
def ingest_validate(jobspec: dict, instance: Any) -> FeasibilityCheck:
    """Return the check for the ingest service to await."""
    return FeasibilityCheck(jobspec, instance)
