"""Errors that services return to requesters as (errnum, text) responses."""

from __future__ import annotations

import errno as _errno
import os

# The OSError subclass Python itself picks for these errnos (PEP 3151).
_ERRNO_BASES: dict[int, type[OSError]] = {
    _errno.ENOENT: FileNotFoundError, _errno.EEXIST: FileExistsError,
    _errno.EPERM: PermissionError, _errno.EACCES: PermissionError,
    _errno.ETIMEDOUT: TimeoutError, _errno.ECONNRESET: ConnectionResetError,
    _errno.ECONNREFUSED: ConnectionRefusedError, _errno.ECONNABORTED: ConnectionAbortedError,
    _errno.EPIPE: BrokenPipeError, _errno.ESHUTDOWN: BrokenPipeError,
    _errno.EAGAIN: BlockingIOError, _errno.EALREADY: BlockingIOError,
    _errno.EINPROGRESS: BlockingIOError, _errno.EINTR: InterruptedError,
    _errno.ECHILD: ChildProcessError, _errno.EISDIR: IsADirectoryError,
    _errno.ENOTDIR: NotADirectoryError, _errno.ESRCH: ProcessLookupError,
}
_FLAVOURS: dict[type[OSError], type] = {}


class FluxError(OSError):
    """An error with an errno and a message for the user.

    Services raise it to answer a request with that error; the SDK raises it (it is an
    OSError, as flux-core's Python bindings raise) when a response carries one.
    Like ``OSError(errno, msg)``, it is made an instance of the matching subclass
    (ENOENT -> FileNotFoundError, EPERM -> PermissionError...), so code written for
    flux-core's bindings (``except FileNotFoundError``) catches it.
    """

    def __new__(cls, errnum: int = 0, message: str | None = None, *args):
        if cls is FluxError:
            cls = _FLAVOURS.get(_ERRNO_BASES.get(errnum), cls)
        return super().__new__(cls, errnum, message or os.strerror(errnum))

    def __init__(self, errnum: int, message: str | None = None):
        super().__init__(errnum, message or os.strerror(errnum))

    @property
    def message(self) -> str:
        return self.strerror or ""


# FluxFileNotFoundError, FluxPermissionError...: module attributes, so they pickle
for _base in dict.fromkeys(_ERRNO_BASES.values()):
    _FLAVOURS[_base] = globals()[f"Flux{_base.__name__}"] = type(
        f"Flux{_base.__name__}", (FluxError, _base), {"__module__": __name__})
del _base


def einval(message: str) -> FluxError:
    return FluxError(_errno.EINVAL, message)


def eproto(message: str) -> FluxError:
    return FluxError(_errno.EPROTO, message)


def eperm(message: str) -> FluxError:
    return FluxError(_errno.EPERM, message)


def enoent(message: str) -> FluxError:
    return FluxError(_errno.ENOENT, message)
