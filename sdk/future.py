"""Futures as flux-core's Python bindings offer them: get, then, wait_for, reset."""

from __future__ import annotations

import collections
import errno
import os
from collections.abc import Callable

from flux.core.errors import FluxError

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

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

    def then(self, callback: Callable, *args, timeout: float = -1.0, **kwargs) -> Future:
        """Call callback(future, *args, **kwargs) from the reactor when a value is ready.

        With ``timeout`` >= 0, a future still empty after that many seconds is
        fulfilled with ETIMEDOUT (its ``get()`` raises TimeoutError), as in flux-core."""
        if callback is None:
            raise ValueError("Callback cannot be None")
        self._then = (callback, args, kwargs)
        self.handle._active_futures.add(self)
        if self._values:
            self.handle._schedule_callback(self)
        elif timeout is not None and timeout >= 0:
            def expire(*_a: Any) -> None:
                if not self._values and not self._final:
                    self.fulfill_error(errno.ETIMEDOUT, "Connection timed out")

            self.handle.timer_watcher_create(timeout, expire).start()
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

    def set_flux(self, flux_handle: Flux) -> None:
        self.handle = flux_handle

    def get_reactor(self) -> Flux:
        return self.handle

    def error_string(self) -> str | None:
        """The error text of a future fulfilled with an error (None otherwise)."""
        if self._values and self._values[0][1] is not None:
            return self._values[0][1].strerror
        return None

    def raise_if_handle_exception(self) -> None:
        """flux-core re-raises a callback's exception here; ours propagate directly."""

    def incref(self) -> None:
        """Reference counting is Python's own here."""


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


class FutureExt(Future):
    """A future fulfilled from Python, as flux-core's ``FutureExt``.

    ``init_cb(future, *args, **kwargs)`` runs once, when the first ``then()`` or
    ``get()`` needs the value; it (or anything later) calls ``fulfill(value)`` or
    ``fulfill_error(errnum, errstr)``."""

    def __init__(self, init_cb: Callable, *args, flux_handle: Flux | None = None, **kwargs):
        super().__init__(flux_handle)
        self._init = (init_cb, args, kwargs)

    def _start(self) -> None:
        if self._init is not None:
            if self.handle is None:
                raise OSError(errno.EINVAL, "FutureExt has no Flux handle: call set_flux()")
            init_cb, args, kwargs = self._init
            self._init = None
            init_cb(self, *args, **kwargs)

    def fulfill_error(self, errnum: int = errno.ENOENT, errstr: str | None = None) -> None:
        super().fulfill_error(errnum, errstr)

    def then(self, callback: Callable, *args, timeout: float = -1.0, **kwargs) -> FutureExt:
        super().then(callback, *args, timeout=timeout, **kwargs)
        self._start()
        return self

    def wait_for(self, timeout: float = -1.0) -> FutureExt:
        self._start()
        if not self._values:
            # values may come from callbacks (e.g. of RPCs the init callback sent)
            self.handle._run_until(self.is_ready, timeout)
            if not self._values:
                raise TimeoutError(errno.ETIMEDOUT, "Connection timed out")
        return self


class WaitAllFuture(Future):
    """Ready when every pushed child future is (flux-core's ``WaitAllFuture``);
    ``get()`` raises the first child's error, if any."""

    def __init__(self, children: list[Future] | None = None):
        self.children: list[Future] = []
        super().__init__(None)
        for child in children or []:
            self.push(child)

    def push(self, child: Future, name: str | None = None) -> None:
        if self.handle is None:
            self.handle = child.handle
        self.children.append(child)

    def is_ready(self) -> bool:
        return all(c.is_ready() for c in self.children)

    def wait_for(self, timeout: float = -1.0) -> WaitAllFuture:
        import time

        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        for child in self.children:
            left = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            child.wait_for(left)
        return self

    def get(self) -> None:
        self.wait_for()
        for child in self.children:
            child.get()

    def then(self, callback: Callable, *args, timeout: float = -1.0, **kwargs) -> WaitAllFuture:
        pending = [c for c in self.children if not c.is_ready()]
        if not pending:
            self.fulfill(None)
            return super().then(callback, *args, timeout=timeout, **kwargs)

        def one_done(child: Future, prev: tuple | None) -> None:
            if prev is not None:  # the child's own callback still runs
                cb, a, kw = prev
                cb(child, *a, **kw)
            if all(c.is_ready() for c in self.children) and not self._values:
                self.fulfill(None)

        super().then(callback, *args, timeout=timeout, **kwargs)
        for child in pending:
            child.then(one_done, child._then)
        return self
