"""Messages as SDK users see them (flux-core's `flux.message.Message` shape)."""

from __future__ import annotations

from flux.core.message import Message as _Core

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any


class Message:
    """A received message: `.topic`, `.payload` (decoded JSON), `.payload_str`, ..."""

    __slots__ = ("_m",)

    def __init__(self, msg: _Core):
        self._m = msg

    @property
    def core(self) -> _Core:
        return self._m

    @property
    def topic(self) -> str:
        return self._m.topic

    @property
    def type(self) -> int:
        return self._m.type

    @property
    def payload(self) -> Any:
        return self._m.data()

    @property
    def payload_str(self) -> str | None:
        p = self._m.payload
        if p is None:
            return None
        if isinstance(p, str):
            return p
        if isinstance(p, bytes | bytearray):
            return bytes(p).rstrip(b"\0").decode(errors="replace")
        import json

        return json.dumps(p)

    @property
    def errnum(self) -> int:
        return self._m.errnum

    @property
    def userid(self) -> int:
        return self._m.userid

    @property
    def rolemask(self) -> int:
        return self._m.rolemask

    @property
    def matchtag(self) -> int:
        return self._m.matchtag

    @property
    def seq(self) -> int:
        return self._m.seq

    def __repr__(self) -> str:
        return f"<flux.Message {self.topic!r} type={self.type}>"
