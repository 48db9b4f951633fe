"""Broker attributes (SPEC 6.5): named string values, some read-only, served as attr.*."""

from __future__ import annotations

import errno
from collections.abc import Callable

from flux.core.broker.service import Service, method, payload_of, require
from flux.core.errors import FluxError

ATTR_IMMUTABLE = 0x01  # set once at startup, never changed (flux-core FLUX_ATTRFLAG_IMMUTABLE)
ATTR_READONLY = 0x02  # changed only by the broker itself


class Attributes:
    """The attribute table of one broker."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._flags: dict[str, int] = {}
        self._watchers: dict[str, list[Callable[[str], None]]] = {}

    def set(self, name: str, value, flags: int = 0, *, force: bool = True) -> None:
        if not force and self._flags.get(name, 0) & (ATTR_IMMUTABLE | ATTR_READONLY):
            raise FluxError(errno.EPERM, f"attribute {name} is read-only")
        self._values[name] = str(value)
        if flags or name not in self._flags:
            self._flags[name] = flags
        for cb in self._watchers.get(name, ()):
            cb(str(value))

    def setdefault(self, name: str, value, flags: int = 0) -> str:
        if name not in self._values:
            self.set(name, value, flags)
        else:
            self._flags[name] = self._flags.get(name, 0) | flags
        return self._values[name]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name, default)

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise FluxError(errno.ENOENT, f"attribute {name} is not set") from None

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def flags(self, name: str) -> int:
        return self._flags.get(name, 0)

    def names(self) -> list[str]:
        return sorted(self._values)

    def remove(self, name: str) -> None:
        if name not in self._values:
            raise FluxError(errno.ENOENT, f"attribute {name} is not set")
        if self._flags.get(name, 0) & (ATTR_IMMUTABLE | ATTR_READONLY):
            raise FluxError(errno.EPERM, f"attribute {name} is read-only")
        del self._values[name]
        self._flags.pop(name, None)

    def watch(self, name: str, cb: Callable[[str], None]) -> None:
        """Call cb(value) whenever the attribute is set (e.g. log levels)."""
        self._watchers.setdefault(name, []).append(cb)

    def get_int(self, name: str, default: int) -> int:
        v = self._values.get(name)
        try:
            return int(v) if v is not None else default
        except ValueError:
            return default


class AttrService(Service):
    name = "attr"

    @method("get")
    def get(self, msg):
        name = require(payload_of(msg), "name", str, msg.topic)
        a = self.broker.attrs
        return {"value": a[name], "flags": a.flags(name)}

    @method("set", owner_only=True)
    def set_(self, msg):
        p = payload_of(msg)
        name = require(p, "name", str, msg.topic)
        value = p.get("value")
        if value is None:
            self.broker.attrs.remove(name)
        else:
            if not isinstance(value, str):
                raise FluxError(errno.EPROTO, "attr.set: field 'value' must be a string")
            self.broker.validate_attr(name, value)
            self.broker.attrs.set(name, value, force=False)
        return {}

    @method("rm", owner_only=True)
    def rm(self, msg):
        self.broker.attrs.remove(require(payload_of(msg), "name", str, msg.topic))
        return {}

    @method("list")
    def list_(self, msg):
        return {"names": self.broker.attrs.names()}
