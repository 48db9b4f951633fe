"""Merge the PMI puts of all the shells of a job at each barrier.

Each shell sends the puts its tasks made since the last barrier to the leader
shell (shell rank 0) as `<uid>-shell-<id>.pmi-exchange {seq, shell_rank, kvs}`;
once every shell has contributed to round `seq`, the leader answers each with the
union, which every shell adds to what its tasks can get. A one-node job needs no
messages at all.

A shell may be ready before the leader has registered its service (shells start
independently): its request then gets ENOSYS and is sent again after a short,
growing delay, for at most RETRY_FOR seconds.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

from flux.core.errors import FluxError

METHOD = "pmi-exchange"
RETRY_FOR = 60.0


class Exchange:
    def __init__(self, shell: Any):
        self.shell = shell
        info = shell.info
        self.nnodes = info.nnodes
        self.leader_rank = info.ranks[0].rank  # broker rank of shell rank 0
        self.shell_rank = shell.shell_rank
        self.seq = 0
        self.rounds: dict[int, dict] = {}
        if self.shell_rank == 0 and self.nnodes > 1:
            shell.service_register(METHOD, self._request)

    async def __call__(self, local: dict[str, str]) -> dict[str, str]:
        seq = self.seq
        self.seq += 1
        if self.nnodes == 1:
            return local
        if self.shell_rank == 0:
            return await self._contribute(seq, 0, local, None)
        topic = f"{self.shell.service}.{METHOD}"
        payload = {"seq": seq, "shell_rank": self.shell_rank, "kvs": local}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR
        delay = 0.005
        while True:
            try:
                resp = await self.shell.conn.rpc(topic, payload, nodeid=self.leader_rank)
                return resp["kvs"]
            except FluxError as exc:
                if exc.errno != errno.ENOSYS or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)  # the leader shell is not up yet
            delay = min(delay * 2, 0.5)

    # ------------------------------------------------------------ leader
    def _request(self, msg: Any) -> None:
        conn = self.shell.conn
        try:
            p = msg.data()
            seq, rank, kvs = p["seq"], p["shell_rank"], p["kvs"]
            if not isinstance(seq, int) or not isinstance(rank, int) or not isinstance(kvs, dict) \
                    or not 0 < rank < self.nnodes:
                raise ValueError("seq, shell_rank (1..nnodes-1) and kvs are required")
        except (ValueError, TypeError, KeyError) as exc:
            conn.respond_error(msg, errno.EPROTO, f"malformed {METHOD} request: {exc}")
            return
        try:
            self._contribute(seq, rank, {str(k): str(v) for k, v in kvs.items()}, msg)
        except FluxError as exc:
            conn.respond_error(msg, exc.errno, exc.strerror)

    def _contribute(self, seq: int, rank: int, kvs: dict[str, str],
                    msg: Any) -> asyncio.Future:
        rnd = self.rounds.get(seq)
        if rnd is None:
            rnd = self.rounds[seq] = {"parts": {}, "msgs": [],
                                      "fut": asyncio.get_running_loop().create_future()}
        if rank in rnd["parts"]:
            raise FluxError(errno.EEXIST, f"shell {rank} already joined PMI barrier {seq}")
        rnd["parts"][rank] = kvs
        if msg is not None:
            rnd["msgs"].append(msg)
        if len(rnd["parts"]) == self.nnodes:
            del self.rounds[seq]
            merged: dict[str, str] = {}
            for r in sorted(rnd["parts"]):
                merged.update(rnd["parts"][r])
            for m in rnd["msgs"]:
                try:
                    self.shell.conn.respond(m, {"kvs": merged})
                except OSError:
                    pass
            rnd["fut"].set_result(merged)
        return rnd["fut"]
