"""Futures as flux-core's Python bindings offer them: get, then, wait_for, reset."""

from __future__ import annotations

import collections
import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flux.core.errors import FluxError

if TYPE_CHECKING:
    from flux.handle import Flux

_UNSET = object()


class Future:
    """A value that arrives later. Streams deliver several values: `reset()` moves on."""

    def __init__(self, handle: Flux):
        self.handle = handle
        self._values: collections.deque = collections.deque()  # (value, exc)
        self._then: tuple[Callable, tuple, dict] | None = None
        self._final = False  # no more values will arrive

    # -- producer side --------------------------------------------------------
    def fulfill(self, value: Any = None, final: bool = True) -> None:
        self._push(value, None, final)

    def fulfill_error(self, errnum: int, errstr: str | None = None) -> None:
        self._push(None, FluxError(errnum, errstr or os.strerror(errnum)), True)

    def _push(self, value, exc, final) -> None:
        self._values.append((value, exc))
        if final:
            self._final = True
        if self._then is not None:
            self.handle._schedule_callback(self)

    # -- consumer side --------------------------------------------------------
    def is_ready(self) -> bool:
        return bool(self._values)

    def wait_for(self, timeout: float = -1.0) -> Future:
        """Block until a value is ready; raise TimeoutError after `timeout` seconds (<0: never)."""
        if not self._values:
            self.handle._wait_until(self.is_ready, timeout)
            if not self._values:
                raise TimeoutError(errno.ETIMEDOUT, "Connection timed out")
        return self

    def get(self) -> Any:
        self.wait_for()
        value, exc = self._values[0]
        if exc is not None:
            raise exc
        return value

    def then(self, callback: Callable, *args, **kwargs) -> Future:
        """Call callback(future, *args, **kwargs) from the reactor when a value is ready."""
        self._then = (callback, args, kwargs)
        self.handle._active_futures.add(self)
        if self._values:
            self.handle._schedule_callback(self)
        return self

    def reset(self) -> None:
        """Discard the current value so the next one of a stream can be waited for."""
        if self._values:
            self._values.popleft()

    def _run_then(self) -> None:
        if self._then is None or not self._values:
            return
        cb, args, kwargs = self._then
        before = len(self._values)
        at_final = self._final and before == 1
        cb(self, *args, **kwargs)
        if at_final or (self._final and not self._values):
            self.handle._active_futures.discard(self)
        elif self._values and len(self._values) < before:
            self.handle._schedule_callback(self)  # the callback consumed one; more are queued

    def _is_stream(self) -> bool:
        return False

    def get_flux(self) -> Flux:
        return self.handle


class RPC(Future):
    """The future of a request: the response payload, or OSError with the error."""

    def __init__(self, handle: Flux, topic: str, matchtag: int, streaming: bool):
        super().__init__(handle)
        self.topic = topic
        self.matchtag = matchtag
        self.streaming = streaming

    def _is_stream(self) -> bool:
        return self.streaming

    def _deliver(self, msg) -> None:
        final = not self.streaming or bool(msg.errnum)
        if final:
            self.handle._rpcs.pop(self.matchtag, None)
        if msg.errnum:
            self._push(None, FluxError(msg.errnum, msg.errstr() or os.strerror(msg.errnum)), True)
        else:
            self._push(msg, None, final)

    def get(self) -> Any:
        msg = super().get()
        return msg.data()

    def get_str(self) -> str | None:
        msg = super().get()
        return None if msg.payload is None else msg.errstr()

    def get_raw(self) -> bytes | None:
        msg = super().get()
        return msg.raw()

    def get_message(self):
        return super().get()

    def cancel(self, stop: bool = False) -> None:
        """Ask the service to end a stream (`<service>.cancel {matchtag}`)."""
        service = self.topic.split(".", 1)[0]
        self.handle.rpc(f"{service}.cancel", {"matchtag": self.matchtag},
                        flags=1)
