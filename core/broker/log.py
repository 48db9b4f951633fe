"""The broker's log: a ring buffer per broker, `log.append`, `log.dmesg`, `log.clear`.

Entries at or above `log-forward-level` severity are forwarded to rank 0, so the
root's ring shows what matters across the whole instance (as `flux dmesg` does).
"""

from __future__ import annotations

import collections
import errno
import logging
import socket
import sys
import time

from flux.core.broker.service import NOREPLY, Service, method, payload_of
from flux.core.errors import FluxError
from flux.core.message import FLAG_NORESPONSE, Message

LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG = 3, 4, 5, 6, 7

_PY_TO_SYSLOG = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
                 logging.DEBUG: 7}


def level_number(level) -> int:
    """Accept a syslog number or name ('err', 'info', ...)."""
    if isinstance(level, int):
        return level
    s = str(level).strip().lower()
    if s.isdigit():
        return int(s)
    aliases = {"error": "err", "warn": "warning", "critical": "crit", "emergency": "emerg"}
    s = aliases.get(s, s)
    if s in LEVELS:
        return LEVELS.index(s)
    raise FluxError(errno.EINVAL, f"unknown log level '{level}' (use 0-7 or {', '.join(LEVELS)})")


def format_entry(e: dict, human: bool = False) -> str:
    ts = e["timestamp"]
    if human:
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1e6):06d}"
    else:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"
    lvl = LEVELS[e["level"]] if 0 <= e["level"] < 8 else str(e["level"])
    return f"{stamp} {e.get('appname', 'broker')}.{lvl}[{e.get('rank', 0)}]: {e['message']}"


class LogService(Service):
    name = "log"

    def __init__(self, broker):
        super().__init__(broker)
        a = broker.attrs
        size = a.setdefault("log-ring-size", "1024")
        if not (size.isdigit() and int(size) > 0):
            raise FluxError(errno.EINVAL, "attribute log-ring-size must be a positive integer")
        self.ring_size = int(size)
        self.ring: collections.deque = collections.deque(maxlen=self.ring_size)
        self.level = level_number(a.setdefault("log-level", "7"))
        self.stderr_level = level_number(a.setdefault("log-stderr-level", "3"))
        self.forward_level = level_number(a.setdefault("log-forward-level", "7"))
        self.stderr_mode = a.setdefault("log-stderr-mode", "leader")
        self.logfile = None
        fname = a.get("log-filename")
        if fname:
            self.logfile = open(fname, "a", buffering=1)  # noqa: SIM115 - lives with the broker
        self.followers: dict[int, Message] = {}
        self.hostname = socket.gethostname()
        a.watch("log-level", lambda v: setattr(self, "level", level_number(v)))
        a.watch("log-stderr-level", lambda v: setattr(self, "stderr_level", level_number(v)))
        a.watch("log-forward-level", lambda v: setattr(self, "forward_level", level_number(v)))
        a.watch("log-ring-size", self._resize)
        self._seq = 0

    def _resize(self, value: str) -> None:
        self.ring_size = int(value)
        self.ring = collections.deque(self.ring, maxlen=self.ring_size)

    def append(self, level: int, message: str, appname: str = "broker", rank: int | None = None,
               timestamp: float | None = None, forwarded: bool = False) -> None:
        if level > self.level and not forwarded:
            return
        rank = self.broker.rank if rank is None else rank
        e = {"level": level, "message": message, "appname": appname, "rank": rank,
             "timestamp": timestamp or time.time(), "hostname": self.hostname}
        self._seq += 1
        e["seq"] = self._seq
        self.ring.append(e)
        if level <= self.stderr_level and (self.broker.rank == 0 or self.stderr_mode == "local"):
            if self.stderr_mode != "leader" or self.broker.rank == 0:
                print(format_entry(e), file=sys.stderr, flush=True)
        if self.logfile:
            self.logfile.write(format_entry(e) + "\n")
        for msg in list(self.followers.values()):
            self.respond(msg, e)
        if self.broker.rank != 0 and level <= self.forward_level and not forwarded:
            # to rank 0 (nodeid ANY would be served by this rank's own log service)
            req = Message.request("log.append", dict(e, forwarded=True), nodeid=0,
                                  flags=FLAG_NORESPONSE)
            self.broker.send_internal(req)

    @method("append")
    def append_rpc(self, msg):
        p = payload_of(msg)
        message = p.get("message")
        if not isinstance(message, str):
            raise FluxError(errno.EPROTO, "log.append: field 'message' must be a string")
        level = p.get("level", LOG_INFO)
        if isinstance(level, bool) or not isinstance(level, int | str):
            raise FluxError(errno.EPROTO, "log.append: field 'level' must be an integer or a name")
        level = level_number(level)
        if not 0 <= level <= 7:
            raise FluxError(errno.EINVAL, f"log.append: level {level} is not 0-7")
        # checked here: a bad entry in the ring would break every later `flux dmesg`
        rank, ts = p.get("rank"), p.get("timestamp")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
            raise FluxError(errno.EPROTO, "log.append: field 'rank' must be an integer")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
            raise FluxError(errno.EPROTO, "log.append: field 'timestamp' must be a number")
        self.append(level, message, appname=str(p.get("appname", "logger")), rank=rank,
                    timestamp=ts, forwarded=bool(p.get("forwarded")))
        return {}

    @method("dmesg")
    def dmesg(self, msg):
        p = payload_of(msg)
        follow = bool(p.get("follow"))
        if follow and not msg.streaming:
            raise FluxError(errno.EPROTO, "log.dmesg: follow requires the streaming flag")
        if not p.get("nobacklog"):
            if not msg.streaming:
                return {"entries": list(self.ring)}
            for e in list(self.ring):
                self.respond(msg, e)
        if follow:
            self.followers[id(msg)] = msg
            return NOREPLY
        if msg.streaming:
            self.respond_error(msg, errno.ENODATA)
            return NOREPLY
        return {"entries": []}

    @method("clear", owner_only=True)
    def clear(self, msg):
        self.ring.clear()
        return {}

    @method("cancel")
    def cancel(self, msg):
        tag = payload_of(msg).get("matchtag")
        for k, m in list(self.followers.items()):
            if m.matchtag == tag and m.sender == msg.sender:
                del self.followers[k]
                self.respond_error(m, errno.ENODATA)
        return NOREPLY

    def disconnect(self, sender: str) -> None:
        for k, m in list(self.followers.items()):
            if m.sender == sender:
                del self.followers[k]


class RingHandler(logging.Handler):
    """Sends the broker's Python `logging` records into its ring buffer."""

    def __init__(self, service: LogService):
        super().__init__()
        self.service = service

    def emit(self, record: logging.LogRecord) -> None:
        try:
            lvl = _PY_TO_SYSLOG.get(record.levelno, 6)
            self.service.append(lvl, record.getMessage(), appname=record.name.split(".")[-1])
        except Exception:  # noqa: BLE001 - logging must never raise
            pass
