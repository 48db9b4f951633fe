"""Errors that services return to requesters as (errnum, text) responses."""

from __future__ import annotations

import errno as _errno
import os


class FluxError(OSError):
    """An error with an errno and a message for the user.

    Services raise it to answer a request with that error; the SDK raises it (it is an
    OSError, as flux-core's Python bindings raise) when a response carries one.
    """

    def __init__(self, errnum: int, message: str | None = None):
        super().__init__(errnum, message or os.strerror(errnum))

    @property
    def message(self) -> str:
        return self.strerror or ""


def einval(message: str) -> FluxError:
    return FluxError(_errno.EINVAL, message)


def eproto(message: str) -> FluxError:
    return FluxError(_errno.EPROTO, message)


def eperm(message: str) -> FluxError:
    return FluxError(_errno.EPERM, message)


def enoent(message: str) -> FluxError:
    return FluxError(_errno.ENOENT, message)
