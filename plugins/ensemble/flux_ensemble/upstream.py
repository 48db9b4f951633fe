"""The member side of an ensemble: the link to the parent instance.

A member is a child instance started by an ensemble parent (`[ensemble] member`).
Its rank 0 connects to the parent (the `parent-uri` its job gave it) and sends one
streaming `ensemble.join`; the parent answers on that stream with batches of jobs,
cancels and signals. They are handled in arrival order: a leaf submits the jobs to
its own job manager (runner.py), a middle level passes them on (downstream.py).

Going up, the events of those jobs are gathered for one event-loop turn (or
`flush-delay` seconds) and sent as one `ensemble.events` request.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time

from flux.core.errors import FluxError
from flux.core.job import fluid

from flux_ensemble.config import EnsembleConfig
from flux_ensemble.downstream import unpack


def parent_of(broker, cfg: EnsembleConfig | None = None) -> tuple[str, int]:
    """The parent's URI and our job id there (from the attributes a job's broker has,
    or the environment its shell gave it). The parent's rank 0 when it told us its
    socket and the socket is on this host: straight to its ensemble service."""
    uri = broker.attrs.get("parent-uri") or os.environ.get("FLUX_URI")
    direct = cfg.parent_uri if cfg is not None else None
    if direct and direct.startswith("local://") and os.path.exists(direct[len("local://"):]):
        uri = direct
    jobid = broker.attrs.get("jobid") or os.environ.get("FLUX_JOB_ID")
    if not uri or not jobid:
        raise FluxError(errno.EINVAL, "ensemble.member is set but this instance is not a job "
                                      "of another instance (no parent-uri / jobid)")
    return uri, fluid.parse(jobid)


class Upstream:
    def __init__(self, svc, cfg: EnsembleConfig):
        self.svc = svc
        self.broker = svc.broker
        self.cfg = cfg
        self.uri, self.jobid = parent_of(svc.broker, cfg)
        self.conn = None
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.out: list[list] = []
        self.flush_scheduled = False
        self.consumer: asyncio.Task | None = None
        self.joined = False
        self.lost_reason: str | None = None
        self.stats = {"received": 0, "t_first": None}

    async def connect(self) -> None:
        from flux.shell.conn import Connection

        self.conn = await Connection.connect(self.uri, on_lost=self._lost)
        self.consumer = asyncio.ensure_future(self._consume())

    def join(self, tree: dict) -> None:
        """Tell the parent we are ready for jobs."""
        self.joined = True
        self.conn.rpc("ensemble.join", {"id": self.jobid, "uri": self.broker.attrs.get("local-uri"),
                                        "tree": tree}, streaming=True, callback=self._on_msg)

    def _on_msg(self, msg) -> None:
        if msg.errnum:
            why = msg.errstr() or os.strerror(msg.errnum)
            if msg.errnum != errno.ENODATA:
                self.broker.log(3, f"ensemble: the parent instance refused this member: {why}")
            self.lost_reason = why
            return
        self.inbox.put_nowait(msg.data())

    def _lost(self, exc: BaseException) -> None:
        self.lost_reason = str(exc)
        self.broker.log(4, f"ensemble: lost the connection to the parent instance: {exc}")

    async def _consume(self) -> None:
        """Batches in arrival order: jobs before the cancels that follow them."""
        svc = self.svc
        while True:
            p = await self.inbox.get()
            try:
                jobs = unpack(p) if p.get("jobs") else None
                if jobs:
                    st = self.stats
                    st["received"] += len(jobs)
                    if st["t_first"] is None:
                        st["t_first"] = time.time()
                    await svc.receive_jobs(jobs)
                for key, ctx in p.get("cancel") or ():
                    svc.receive_cancel(key, ctx)
                for key, signum in p.get("kill") or ():
                    svc.receive_kill(key, signum)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the link
                self.broker.log_exception("ensemble: handling a batch from the parent", exc)

    # --------------------------------------------------------------- up
    def send(self, key: int, name: str, ctx: dict | None, extra: dict | None = None) -> None:
        self.out.append([key, name, ctx, extra] if extra else [key, name, ctx])
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop = asyncio.get_running_loop()
            if self.cfg.flush_delay:
                loop.call_later(self.cfg.flush_delay, self._flush)
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        out, self.out = self.out, []
        if not out or self.conn is None or self.conn.closed:
            return
        bmax = self.cfg.batch_max * 4  # events are small; a job has about six going up
        for i in range(0, len(out), bmax):
            try:
                self.conn.send_noresponse("ensemble.events", {"id": self.jobid,
                                                              "events": out[i:i + bmax]})
            except FluxError as exc:
                self.broker.log(3, f"ensemble: cannot send events to the parent: {exc.strerror}")
                return

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.cancel()
        if self.conn is not None:
            self._flush()
            self.conn.close()
