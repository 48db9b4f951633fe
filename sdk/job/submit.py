"""Job submission (SPEC 7.1): :func:`submit`, :func:`submit_async`, and the batch form
:func:`submit_batch_async` used by ``flux submit --cc``.

The jobspec is signed here and sent to ``job-ingest.submit``, which answers with the job
id once the job is stored.  The instance owner signs with mechanism ``none`` (the
instance checks that the signer is the connected user); any other user of a
multi-user instance signs with ``ed25519`` and the key made by ``flux keygen --user``
(``~/.flux/curve/sig``), which the instance and the IMP verify (docs/multiuser.md).
Kept light: nothing here imports the jobspec classes.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable, Mapping

from flux.core.security.sign import wrap_none
from flux.future import RPC
from flux.job.JobID import JobID

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

    from flux.handle import Flux

__all__ = [
    "SubmitBatchFuture",
    "SubmitFuture",
    "submit",
    "submit_async",
    "submit_batch_async",
    "submit_get_id",
]

FLUX_JOB_PRE_SIGNED = 1
FLUX_JOB_DEBUG = 2
FLUX_JOB_WAITABLE = 4
FLUX_JOB_NOVALIDATE = 8
URGENCY_DEFAULT = 16


def _dumps(obj: Any) -> bytes:
    """Compact JSON: orjson when the process already loaded it, else the stdlib (whose
    import is far cheaper for a one-job command)."""
    orjson = sys.modules.get("orjson")
    if orjson is not None:
        try:
            return orjson.dumps(obj)
        except TypeError:
            pass
    import json

    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _jobspec_bytes(jobspec: Any) -> bytes:
    """The JSON encoding of a Jobspec object, JSON text, or decoded dict."""
    if isinstance(jobspec, bytes):
        return jobspec
    if isinstance(jobspec, str):
        return jobspec.encode()
    if isinstance(jobspec, Mapping):
        return _dumps(jobspec)
    inner = getattr(jobspec, "jobspec", None)
    if isinstance(inner, Mapping):  # flux.job.Jobspec
        return _dumps(inner)
    raise TypeError(f"jobspec must be a Jobspec, str, bytes or dict, not {type(jobspec).__name__}")


def user_key_path() -> str:
    """The private signing key of the calling user: ~/.flux/curve/sig (home from passwd)."""
    import pwd

    return os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".flux", "curve", "sig")


def _instance_owner(flux_handle: Flux) -> int:
    import socket
    import struct

    try:  # the broker at the other end of the socket runs as the owner
        cred = flux_handle.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        return struct.unpack("3i", cred)[1]
    except (AttributeError, OSError):
        return int(flux_handle.attr_get("security.owner"))


def sign_jobspec(flux_handle: Flux, payload: bytes, userid: int) -> str:
    """J of a jobspec: ``none`` for the instance owner (or a user without a key, whom a
    multi-user instance then refuses with a clear message), else ``ed25519``."""
    aux = getattr(flux_handle, "aux", {})
    key = aux.get("flux::sign-key", False)
    if key is False:
        key = None
        path = user_key_path()
        if os.getuid() != _instance_owner(flux_handle) and os.path.exists(path):
            from flux.imp.sign import SignError, load_private_key

            try:
                key = load_private_key(path)
            except (OSError, SignError) as exc:
                raise OSError(errno.EPERM, f"cannot sign the job: {exc}") from None
        aux["flux::sign-key"] = key
    if key is None:
        return wrap_none(payload, userid)
    from flux.imp.sign import sign

    return sign(payload, userid, key)


def _userid(flux_handle: Flux) -> int:
    cred = getattr(flux_handle, "_cred", None)  # FLUX_HANDLE_USERID testing override
    return cred[0] if cred else os.getuid()


def _check_urgency(urgency: int) -> int:
    if isinstance(urgency, bool) or not isinstance(urgency, int) or not 0 <= urgency <= 31:
        raise OSError(errno.EINVAL, f"urgency must be an integer 0-31, not {urgency!r}")
    return urgency


def _flags(waitable: bool, debug: bool, novalidate: bool) -> int:
    flags = 0
    if waitable:
        flags |= FLUX_JOB_WAITABLE
    if debug:
        flags |= FLUX_JOB_DEBUG
    if novalidate:
        flags |= FLUX_JOB_NOVALIDATE
    return flags


def _request(flux_handle: Flux, jobspec: Any, urgency: int, flags: int, pre_signed: bool) -> dict:
    if pre_signed:
        J = jobspec.decode() if isinstance(jobspec, bytes) else jobspec
        if not isinstance(J, str):
            raise TypeError("a pre-signed jobspec must be a str or bytes")
    else:
        J = sign_jobspec(flux_handle, _jobspec_bytes(jobspec), _userid(flux_handle))
    return {"J": J, "urgency": _check_urgency(urgency), "flags": flags}


class SubmitFuture(RPC):
    """Future of a submission: :meth:`get_id` returns the new :class:`JobID`."""

    def get_id(self) -> JobID:
        return submit_get_id(self)


def submit_async(flux_handle: Flux, jobspec: Any, urgency: int = URGENCY_DEFAULT,
                 waitable: bool = False, debug: bool = False, pre_signed: bool = False,
                 novalidate: bool = False) -> SubmitFuture:
    """Submit a job without waiting: returns a :class:`SubmitFuture`.

    ``jobspec`` is a :class:`~flux.job.Jobspec`, its JSON text (str or bytes) or a dict;
    with ``pre_signed`` it is an already signed J.  ``urgency`` is 0-31 (above 16 and
    ``waitable``/``novalidate`` are for the instance owner); ``debug`` adds debug events.
    """
    payload = _request(flux_handle, jobspec, urgency, _flags(waitable, debug, novalidate),
                       pre_signed)
    fut = flux_handle.rpc("job-ingest.submit", payload)
    fut.__class__ = SubmitFuture
    return fut


def submit_get_id(future: SubmitFuture) -> JobID:
    """The job id from a submission future (blocks until the answer arrives)."""
    if future is None:
        raise OSError(errno.EINVAL, "future must not be None")
    resp = RPC.get(future)
    try:
        return JobID(resp["id"])
    except (KeyError, TypeError):
        raise OSError(errno.EPROTO, "job-ingest.submit: response lacks a job id") from None


def submit(flux_handle: Flux, jobspec: Any, urgency: int = URGENCY_DEFAULT,
           waitable: bool = False, debug: bool = False, pre_signed: bool = False,
           novalidate: bool = False) -> JobID:
    """Submit a job and return its :class:`JobID` once the instance has stored it."""
    return submit_async(flux_handle, jobspec, urgency, waitable, debug, pre_signed,
                        novalidate).get_id()


class SubmitBatchFuture(RPC):
    """Future of a batch submission: :meth:`get_ids` gives, in order, a :class:`JobID`
    for each accepted job and an ``OSError`` for each rejected one."""

    def get_ids(self) -> list[JobID | OSError]:
        resp = RPC.get(self)
        out: list[JobID | OSError] = []
        for item in resp.get("jobs", []):
            if "id" in item:
                out.append(JobID(item["id"]))
            else:
                errnum = item.get("errnum", errno.EINVAL)
                out.append(OSError(errnum, item.get("errstr") or os.strerror(errnum)))
        return out


def submit_batch_async(flux_handle: Flux, jobspecs: Iterable[Any],
                       urgency: int = URGENCY_DEFAULT, waitable: bool = False,
                       debug: bool = False, novalidate: bool = False) -> SubmitBatchFuture:
    """Submit many jobs in one ``job-ingest.submit {jobs: [...]}`` request (the
    instance stores them together).  Each job is accepted or rejected on its own."""
    flags = _flags(waitable, debug, novalidate)
    return _batch_rpc(flux_handle, [_request(flux_handle, js, urgency, flags, False)
                                    for js in jobspecs])


def _batch_rpc(flux_handle: Flux, requests: list[dict]) -> SubmitBatchFuture:
    """Send prepared ``{J, urgency, flags}`` requests in one batch RPC."""
    fut = flux_handle.rpc("job-ingest.submit", {"jobs": requests})
    fut.__class__ = SubmitBatchFuture
    return fut
