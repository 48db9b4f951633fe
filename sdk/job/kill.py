"""Signalling and cancelling jobs: :func:`kill`, :func:`cancel`, :func:`job_raise`
(``job-manager.kill`` / ``job-manager.raise``)."""

from __future__ import annotations

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from flux.future import RPC
    from flux.handle import Flux

__all__ = ["cancel", "cancel_async", "job_raise", "job_raise_async", "kill", "kill_async"]


def kill_async(flux_handle: Flux, jobid: int, signum: int | None = None) -> RPC:
    """Send a signal (default SIGTERM) to the tasks of a running job."""
    if not signum:
        signum = 15  # SIGTERM
    return flux_handle.rpc("job-manager.kill", {"id": int(jobid), "signum": int(signum)})


def kill(flux_handle: Flux, jobid: int, signum: int | None = None) -> None:
    kill_async(flux_handle, jobid, signum).get()


def job_raise_async(flux_handle: Flux, jobid: int, type: str = "cancel",  # noqa: A002
                    severity: int = 0, note: str | None = None) -> RPC:
    """Raise an exception on a job; severity 0 is fatal (the job is cancelled)."""
    return flux_handle.rpc("job-manager.raise", {"id": int(jobid), "type": type,
                                                 "severity": int(severity), "note": note or ""})


def job_raise(flux_handle: Flux, jobid: int, type: str = "cancel",  # noqa: A002
              severity: int = 0, note: str | None = None) -> None:
    job_raise_async(flux_handle, jobid, type, severity, note).get()


def cancel_async(flux_handle: Flux, jobid: int, reason: str | None = None) -> RPC:
    """Cancel a pending or running job (a severity-0 ``cancel`` exception)."""
    return job_raise_async(flux_handle, jobid, "cancel", 0, reason)


def cancel(flux_handle: Flux, jobid: int, reason: str | None = None) -> None:
    cancel_async(flux_handle, jobid, reason).get()
