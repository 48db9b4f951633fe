"""Base class for in-broker services.

A service owns one or more topic prefixes (its name, e.g. `kvs`) and answers
method topics (`kvs.lookup`). Handlers take the request message and return the
response payload; raising FluxError answers with that error. Handlers may be
coroutines. A handler that answers later (streams, waits) returns NOREPLY and
calls `respond` itself.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flux.core.errors import FluxError
from flux.core.message import ROLE_OWNER, Message, ProtocolError

if TYPE_CHECKING:
    from flux.core.broker.broker import Broker

NOREPLY = object()
log = logging.getLogger("flux.broker")


def method(name: str, *, streaming: bool = False, owner_only: bool = False):
    """Mark a Service method as the handler of `<service>.<name>`."""

    def deco(fn):
        fn._flux_method = (name, streaming, owner_only)
        return fn

    return deco


class Service:
    name: str = ""

    def __init__(self, broker: Broker):
        self.broker = broker
        self.methods: dict[str, tuple[Callable, bool, bool]] = {}
        for attr in dir(type(self)):
            fn = getattr(type(self), attr, None)
            spec = getattr(fn, "_flux_method", None)
            if spec:
                mname, streaming, owner_only = spec
                self.methods[mname] = (getattr(self, attr), streaming, owner_only)

    # lifecycle hooks, overridden as needed
    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def disconnect(self, sender: str) -> None:
        """A client (route id `sender`) went away: drop what it was waiting for."""

    def topics(self) -> list[str]:
        return [self.name]

    # dispatch -----------------------------------------------------------
    def dispatch(self, msg: Message) -> None:
        mname = msg.topic[len(self.name) + 1:] if msg.topic.startswith(self.name + ".") else ""
        if mname == "disconnect":
            self.disconnect(msg.sender)
            return
        entry = self.methods.get(mname)
        if entry is None:
            self.respond_error(msg, errno.ENOSYS, f"No service matching {msg.topic} is registered")
            return
        fn, streaming, owner_only = entry
        if streaming and not msg.streaming:
            self.respond_error(msg, errno.EPROTO, f"{msg.topic} requires the streaming flag")
            return
        if owner_only and not (msg.rolemask & ROLE_OWNER):
            self.respond_error(msg, errno.EPERM, f"{msg.topic} is restricted to the instance owner")
            return
        try:
            result = fn(msg)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
            self._fail(msg, exc)
            return
        if inspect.iscoroutine(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t, m=msg: self._finish(m, t))
        elif result is not NOREPLY:
            self.respond(msg, result)

    def _finish(self, msg: Message, task: asyncio.Future) -> None:
        if task.cancelled():
            self.respond_error(msg, errno.ECANCELED, "request canceled")
            return
        exc = task.exception()
        if exc is not None:
            self._fail(msg, exc)
            return
        result = task.result()
        if result is not NOREPLY:
            self.respond(msg, result)

    def _fail(self, msg: Message, exc: BaseException) -> None:
        if isinstance(exc, FluxError):
            self.respond_error(msg, exc.errno or errno.EINVAL, exc.strerror)
        elif isinstance(exc, ProtocolError):
            self.respond_error(msg, errno.EPROTO, str(exc))
        elif isinstance(exc, (KeyError, TypeError, ValueError, AttributeError)):
            self.respond_error(msg, errno.EPROTO, f"malformed {msg.topic} request: {exc!r}")
            log.debug("%s: bad request", msg.topic, exc_info=exc)
        elif isinstance(exc, OSError) and exc.errno:
            self.respond_error(msg, exc.errno, exc.strerror or str(exc))
        else:
            self.broker.log_exception(f"{msg.topic} handler failed", exc)
            self.respond_error(msg, errno.EINVAL, f"{msg.topic}: internal error: {exc!r}")

    # answering ----------------------------------------------------------
    def respond(self, msg: Message, payload: Any = None) -> None:
        if msg.noresponse:
            return
        self.broker.send_response(msg.response(payload))

    def respond_error(self, msg: Message, errnum: int, errstr: str | None = None) -> None:
        if msg.noresponse:
            return
        self.broker.send_response(msg.response(errnum=errnum, errstr=errstr))


def payload_of(msg: Message) -> dict:
    """The request's JSON object payload, or a clear EPROTO error."""
    data = msg.data()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FluxError(errno.EPROTO, f"{msg.topic}: payload must be a JSON object")
    return data


def require(d: dict, key: str, typ: type | tuple, topic: str = "") -> Any:
    """d[key], checked for presence and type, else EPROTO naming the field."""
    if key not in d:
        raise FluxError(errno.EPROTO, f"{topic}: missing required field '{key}'".lstrip(": "))
    v = d[key]
    if typ is int and isinstance(v, bool) or not isinstance(v, typ):
        tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise FluxError(errno.EPROTO, f"{topic}: field '{key}' must be {tname}".lstrip(": "))
    return v
