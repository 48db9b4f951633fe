"""Run one command on a set of broker ranks through `rexec` (RFC 42), with a timeout.

Each process runs in its own session (rexec starts it so), so a timeout or a cancel
signals the whole process group: SIGTERM, then SIGKILL after `kill_timeout`. Output
lines go to the broker log, naming the job and rank.
"""

from __future__ import annotations

import asyncio
import base64
import signal
from typing import Any

import attrs
from flux.core.errors import FluxError
from flux.core.message import FLAG_STREAMING

LOG_ERR, LOG_INFO = 3, 6
MAX_LOGGED_LINES = 100  # per rank: a chatty script cannot flood the broker log


@attrs.define(slots=True)
class RankResult:
    rank: int
    status: int | None = None  # wait(2) status; None: did not run
    error: str | None = None  # could not be started


@attrs.define(slots=True)
class Result:
    ranks: list[RankResult]
    timed_out: bool = False
    canceled: bool = False

    @property
    def status(self) -> int:
        """The largest wait status (a rank that could not start counts as exit 127)."""
        worst = 0
        for r in self.ranks:
            st = (127 << 8) if r.status is None else r.status
            worst = max(worst, st)
        return worst

    def failed_ranks(self) -> list[int]:
        return [r.rank for r in self.ranks if r.status != 0]


class Run:
    """The command running on some ranks; `cancel()` terminates it."""

    def __init__(self, broker: Any, label: str, argv: list[str], env: dict[str, str],
                 ranks: list[int], timeout: float, kill_timeout: float, imp: str | None = None):
        self.broker = broker
        self.imp = imp  # the command runs as root through this IMP: signal it through the IMP
        self.label = label
        self.argv = argv
        self.env = env
        self.ranks = ranks
        self.timeout = timeout
        self.kill_timeout = kill_timeout
        self.pids: dict[int, int] = {}
        self.results = {r: RankResult(r) for r in ranks}
        self._killer: asyncio.Task | None = None
        self.timed_out = False
        self.canceled = False

    async def wait(self) -> Result:
        tasks = [asyncio.ensure_future(self._one(r)) for r in self.ranks]
        _done, pending = await asyncio.wait(tasks, timeout=self.timeout or None)
        if pending:
            self.timed_out = True
            self._kill()
            await asyncio.wait(pending)
        if self._killer is not None:
            self._killer.cancel()
        return Result(list(self.results.values()), timed_out=self.timed_out,
                      canceled=self.canceled)

    def cancel(self) -> None:
        if not self.canceled and not self.timed_out:
            self.canceled = True
            self._kill()

    def _kill(self) -> None:
        if self._killer is None:
            self._killer = asyncio.ensure_future(self._escalate())

    async def _escalate(self) -> None:
        if self.imp:
            # through the IMP only SIGKILL reaches the script's descendants (a SIGTERM'd
            # shell would leave its children running, holding the output open)
            self._signal(signal.SIGKILL)
            return
        self._signal(signal.SIGTERM)
        await asyncio.sleep(self.kill_timeout)
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        for rank, pid in self.pids.items():
            if self.results[rank].status is None:
                if self.imp:
                    # the owner may not signal a root process: `flux-imp kill` does, when
                    # started by the same broker that started the IMP (rexec on that rank)
                    asyncio.ensure_future(self._imp_kill(rank, pid, signum))
                else:
                    self.broker.send_internal_noresponse(
                        "rexec.kill", {"pid": pid, "signum": int(signum)}, nodeid=rank)

    async def _imp_kill(self, rank: int, pid: int, signum: int) -> None:
        cmd = {"cmdline": [self.imp, "kill", str(int(signum)), str(pid)], "env": {},
               "cwd": "/", "opts": {}, "channels": []}
        rpc = self.broker.rpc("rexec.exec", {"cmd": cmd, "flags": 3}, nodeid=rank,
                              flags=FLAG_STREAMING)
        try:
            async for resp in rpc:
                if resp.get("type") == "output" and (resp.get("io") or {}).get("data"):
                    self._log(LOG_ERR, rank, f"flux-imp kill: {resp['io']['data'].rstrip()}")
        except FluxError as exc:
            self._log(LOG_ERR, rank, f"flux-imp kill {signum} {pid}: {exc.strerror}")
        finally:
            rpc.cancel()

    def _log(self, level: int, rank: int, text: str) -> None:
        self.broker.log(level, f"{self.label}: rank {rank}: {text}")

    async def _one(self, rank: int) -> None:
        cmd = {"cmdline": self.argv, "env": self.env, "cwd": "/", "opts": {}, "channels": []}
        rpc = self.broker.rpc("rexec.exec", {"cmd": cmd, "flags": 3}, nodeid=rank,
                              flags=FLAG_STREAMING)
        res = self.results[rank]
        lines = 0
        try:
            async for resp in rpc:
                t = resp.get("type")
                if t == "started":
                    self.pids[rank] = resp["pid"]
                    # the script gets no stdin; a kill requested before it started is applied now
                    self.broker.send_internal_noresponse(
                        "rexec.write", {"pid": resp["pid"], "io": {"eof": True}}, nodeid=rank)
                    if self._killer is not None:
                        self._signal(signal.SIGKILL if self.imp else signal.SIGTERM)
                elif t == "output":
                    io = resp.get("io") or {}
                    data = io.get("data")
                    if not data:
                        continue
                    if io.get("encoding") == "base64":
                        data = base64.b64decode(data).decode(errors="replace")
                    level = LOG_ERR if io.get("stream") == "stderr" else LOG_INFO
                    for line in data.splitlines():
                        lines += 1
                        if lines <= MAX_LOGGED_LINES:
                            self._log(level, rank, line)
                elif t == "finished":
                    res.status = int(resp.get("status", 0))
        except FluxError as exc:
            res.error = exc.strerror
            self._log(LOG_ERR, rank, f"{self.argv[0]}: {exc.strerror}")
        finally:
            rpc.cancel()
        if lines > MAX_LOGGED_LINES:
            self._log(LOG_INFO, rank, f"({lines - MAX_LOGGED_LINES} more output lines not logged)")
