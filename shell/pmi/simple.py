"""The PMI-1 protocol engine of one job shell: every local task is a client.

Semantics (RFC 13, as flux-core's shell): a put goes to this shell's pending set and
is visible to nobody, not even its writer, until a barrier; a barrier completes
once every local task entered it and the pending puts of every shell of the job
have been merged (`exchange`), then all gets see the merged set. Keys preloaded
by the shell (PMI_process_mapping, flux.*) are visible from the start.

Transport-free: `feed()` takes the bytes a client wrote and the engine answers
through the client's `send`. Unknown commands get `cmd=error rc=-1 msg=...` (never
silence, so a client does not hang); a line longer than MAX_LINE is refused the
same way once its newline arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flux.shell.pmi import wire
from flux.shell.pmi.wire import PMI_FAIL, format_line

Exchange = Callable[[dict[str, str]], Awaitable[dict[str, str]]]


class Client:
    """One task's connection."""

    __slots__ = ("rank", "send", "buf", "mcmd", "initialized", "finalized", "in_barrier",
                 "discard")

    def __init__(self, rank: int, send: Callable[[bytes], None]):
        self.rank = rank
        self.send = send
        self.buf = bytearray()
        self.mcmd: list[str] | None = None  # lines of a multi-line (spawn) request
        self.initialized = False
        self.finalized = False
        self.in_barrier = False
        self.discard = False  # dropping the rest of an overlong line


class SimpleServer:
    def __init__(self, kvsname: str, size: int, nlocal: int, exchange: Exchange,
                 preload: dict[str, str] | None = None, universe_size: int | None = None,
                 appnum: int = 0, on_abort: Callable[[Client, int, str], None] | None = None,
                 trace: Callable[[str], None] | None = None):
        self.kvsname = kvsname
        self.size = size
        self.universe_size = universe_size if universe_size is not None else size
        self.appnum = appnum
        self.nlocal = nlocal
        self.exchange = exchange
        self.on_abort = on_abort
        self.trace = trace
        self.kvs: dict[str, str] = dict(preload or {})  # what gets see
        self.pending: dict[str, str] = {}  # puts since the last barrier
        self.waiting: list[Client] = []
        self.nbarriers = 0
        self.tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------ input
    def feed(self, client: Client, data: bytes) -> None:
        """Bytes from a client: handle each complete line."""
        buf = client.buf
        buf += data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > wire.MAX_LINE:
                    client.discard = True  # answered when its newline comes
                    del buf[:]
                return
            line = bytes(buf[:nl])
            del buf[:nl + 1]
            if client.discard or len(line) > wire.MAX_LINE:
                client.discard = False
                client.send(format_line("error", rc=PMI_FAIL,
                                        msg=f"request_longer_than_{wire.MAX_LINE}_bytes"))
                continue
            self.line(client, line.decode(errors="replace"))

    def line(self, client: Client, line: str) -> None:
        if self.trace:
            self.trace(f"{client.rank}: -> {line}")
        if client.mcmd is not None:
            client.mcmd.append(line)
            if line.strip() == "endcmd":
                client.mcmd = None
                # spawning new processes is not supported (flux-core neither)
                self._reply(client, "spawn_result", rc=PMI_FAIL, msg="spawn_is_not_supported")
            return
        if line.startswith("mcmd="):
            client.mcmd = [line]
            return
        try:
            req = wire.parse(line)
        except wire.WireError as exc:
            self._reply(client, "error", rc=PMI_FAIL, msg=wire.clean(str(exc)))
            return
        cmd = req.get("cmd")
        handler = self.HANDLERS.get(cmd or "")
        if handler is None:
            self._reply(client, "error", rc=PMI_FAIL,
                        msg=wire.clean(f"unknown command {cmd or line}"))
            return
        handler(self, client, req)

    def _reply(self, client: Client, cmd: str, **fields: object) -> None:
        out = format_line(cmd, **fields)
        if self.trace:
            self.trace(f"{client.rank}: <- {out.decode().rstrip()}")
        client.send(out)

    # ------------------------------------------------------------ commands
    def _init(self, client: Client, req: dict[str, str]) -> None:
        if req.get("pmi_version") != "1":
            # PMI-2 (or anything else) on this fd is not served: say so, once
            self._reply(client, "response_to_init", rc=PMI_FAIL, pmi_version=1,
                        pmi_subversion=1)
            return
        client.initialized = True
        self._reply(client, "response_to_init", rc=0, pmi_version=1, pmi_subversion=1)

    def _maxes(self, client: Client, req: dict[str, str]) -> None:
        self._reply(client, "maxes", rc=0, kvsname_max=wire.KVSNAME_MAX,
                    keylen_max=wire.KEYLEN_MAX, vallen_max=wire.VALLEN_MAX)

    def _universe(self, client: Client, req: dict[str, str]) -> None:
        self._reply(client, "universe_size", rc=0, size=self.universe_size)

    def _appnum(self, client: Client, req: dict[str, str]) -> None:
        self._reply(client, "appnum", rc=0, appnum=self.appnum)

    def _kvsname(self, client: Client, req: dict[str, str]) -> None:
        self._reply(client, "my_kvsname", rc=0, kvsname=self.kvsname)

    def _check_kvsname(self, req: dict[str, str]) -> str | None:
        name = req.get("kvsname")
        if name is None:
            return "kvsname_is_missing"
        if name != self.kvsname:
            return wire.clean(f"unknown kvsname {name}")
        return None

    def _put(self, client: Client, req: dict[str, str]) -> None:
        err = self._check_kvsname(req)
        key, value = req.get("key"), req.get("value")
        if err is None and not key:
            err = "key_is_missing"
        if err is None and value is None:
            err = "value_is_missing"
        if err is not None:
            self._reply(client, "put_result", rc=wire.PMI_ERR_INVALID_ARG, msg=err)
            return
        if len(key) > wire.KEYLEN_MAX:
            self._reply(client, "put_result", rc=wire.PMI_ERR_INVALID_KEY_LENGTH,
                        msg=f"key_longer_than_{wire.KEYLEN_MAX}")
            return
        if len(value) > wire.VALLEN_MAX:
            self._reply(client, "put_result", rc=wire.PMI_ERR_INVALID_VAL_LENGTH,
                        msg=f"value_longer_than_{wire.VALLEN_MAX}")
            return
        self.pending[key] = value
        self._reply(client, "put_result", rc=0)

    def _get(self, client: Client, req: dict[str, str]) -> None:
        err = self._check_kvsname(req)
        key = req.get("key")
        if err is None and not key:
            err = "key_is_missing"
        if err is not None:
            self._reply(client, "get_result", rc=wire.PMI_ERR_INVALID_ARG, msg=err)
            return
        value = self.kvs.get(key)
        if value is None:
            self._reply(client, "get_result", rc=PMI_FAIL, msg=wire.clean(f"key {key} not found"))
            return
        self._reply(client, "get_result", rc=0, value=value)

    def _barrier(self, client: Client, req: dict[str, str]) -> None:
        if client.in_barrier:
            self._reply(client, "barrier_out", rc=PMI_FAIL, msg="already_in_barrier")
            return
        client.in_barrier = True
        self.waiting.append(client)
        if len(self.waiting) >= self.nlocal:
            t = asyncio.ensure_future(self._complete_barrier())
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def _complete_barrier(self) -> None:
        waiting, self.waiting = self.waiting, []
        pending, self.pending = self.pending, {}
        self.nbarriers += 1
        rc, msg = 0, None
        try:
            merged = await self.exchange(pending)
            self.kvs.update(merged)
        except Exception as exc:  # noqa: BLE001 - every waiting task gets the failure
            rc, msg = PMI_FAIL, wire.clean(f"exchange failed: {exc}")
        for c in waiting:
            c.in_barrier = False
            if msg is None:
                self._reply(c, "barrier_out", rc=rc)
            else:
                self._reply(c, "barrier_out", rc=rc, msg=msg)

    def _finalize(self, client: Client, req: dict[str, str]) -> None:
        client.finalized = True
        self._reply(client, "finalize_ack", rc=0)

    def _abort(self, client: Client, req: dict[str, str]) -> None:
        try:
            code = int(req.get("exitcode", "1"))
        except ValueError:
            code = 1
        if self.on_abort is not None:
            self.on_abort(client, code, req.get("msg", ""))

    HANDLERS: dict[str, Callable] = {
        "init": _init,
        "get_maxes": _maxes,
        "get_universe_size": _universe,
        "get_appnum": _appnum,
        "get_my_kvsname": _kvsname,
        "put": _put,
        "get": _get,
        "barrier_in": _barrier,
        "finalize": _finalize,
        "abort": _abort,
    }
