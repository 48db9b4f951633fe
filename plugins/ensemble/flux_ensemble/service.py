"""The `ensemble` service (rank 0 of an instance with an `[ensemble]` table).

Methods:
- `ensemble.join` (streaming, owner): a child instance is ready; jobs go down as
  responses `{jobs: [...], cancel: [[key, exception]], kill: [[key, signum]]}`.
- `ensemble.events` (owner): events of jobs sent down, `[[key, name, context, extra?]]`.
- `ensemble.status` (`{"wait": true}` answers once the tree is up): shape, policy,
  readiness, errors and the tree of instances (URI and broker pid of each).
- `ensemble.stats`: counters of this instance, its broker's CPU time.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time

import orjson
from flux.core.broker.service import NOREPLY, Service, method, payload_of
from flux.core.errors import FluxError
from flux.core.hookspecs import hookimpl

from flux_ensemble import shape
from flux_ensemble.config import EnsembleConfig


class DelegateHook:
    """The jobtap callback, registered only in instances that have children."""

    def __init__(self, downstream):
        self.downstream = downstream
        self.envs: dict[bytes, dict] = {}

    @hookimpl
    def jobtap_validate(self, job, manager):
        # the job manager keeps jobspecs without their environment: hold on to it
        # until the job goes down, rather than read the whole jobspec back from the KVS
        try:
            env = job.jobspec["attributes"]["system"].get("environment")
        except (KeyError, TypeError, AttributeError):
            return
        if env is not None:
            # one object for equal environments: a batch going down carries each once
            key = orjson.dumps(env)  # equal J, equal key order
            shared = self.envs.get(key)
            if shared is None:
                if len(self.envs) >= 64:
                    self.envs.pop(next(iter(self.envs)))
                shared = self.envs[key] = env
            job.aux["ensemble.env"] = shared

    @hookimpl
    def jobtap_delegate(self, job, manager):
        return self.downstream.take(job)


class EnsembleService(Service):
    name = "ensemble"

    def __init__(self, broker, cfg: EnsembleConfig | None, error: str | None = None):
        super().__init__(broker)
        self.cfg = cfg
        self.error = error
        self.downstream = None
        self.upstream = None
        self.runner = None
        self.ready = False
        self.ready_waiters: list = []
        self.setup_task: asyncio.Task | None = None
        self.progress_streams: list = []
        self.progress_timer: asyncio.TimerHandle | None = None
        self.drain_waiters: list = []

    async def start(self) -> None:
        if self.cfg is not None and self.error is None:
            self.setup_task = asyncio.ensure_future(self._setup())

    async def stop(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        for m in self.ready_waiters + self.progress_streams + self.drain_waiters:
            self.respond_error(m, errno.ENOSYS, "the instance is shutting down")
        self.ready_waiters.clear()
        self.progress_streams.clear()
        self.drain_waiters.clear()

    async def _setup(self) -> None:
        b = self.broker
        cfg = self.cfg
        try:
            jm = getattr(b, "job_manager", None)
            if jm is None:
                raise FluxError(errno.ENOSYS, "no job manager in this broker")
            await b.resource.ready.wait()
            if cfg.member:
                from flux_ensemble.upstream import Upstream

                self.upstream = Upstream(self, cfg)
                await self.upstream.connect()
            if cfg.has_children:
                from flux_ensemble.downstream import Downstream

                self.downstream = Downstream(self, cfg)
                jm.jobtap.register(DelegateHook(self.downstream), "ensemble")
                await self.downstream.start_children()
            elif cfg.member:
                from flux_ensemble.runner import Runner

                self.runner = Runner(self)
            else:
                raise FluxError(errno.EINVAL, "[ensemble] has an empty shape and this instance "
                                              "is not a member: nothing to do")
        except FluxError as exc:
            self.error = exc.strerror
        except Exception as exc:  # noqa: BLE001 - reported, the broker stays up
            b.log_exception("ensemble: setup failed", exc)
            self.error = f"setup failed: {exc!r}"
        if self.error:
            b.log(3, f"ensemble: {self.error}")
            self._answer_waiters()
            return
        self.check_ready()

    # ---------------------------------------------------------- readiness
    def tree(self) -> dict:
        """This instance and what is below it, as its parent (or a tool) sees it."""
        t = {"uri": self.broker.attrs.get("local-uri"), "pid": os.getpid(),
             "shape": shape.render(self.cfg.levels) if self.cfg else None, "children": []}
        if self.downstream is not None:
            t["children"] = [c.tree or {"uri": c.uri, "state": c.state, "children": []}
                             for c in self.downstream.children]
        return t

    def check_ready(self) -> None:
        """Up when every child joined (a leaf: at once); a member then joins its parent."""
        if self.ready:
            return
        if self.downstream is not None:
            if self.downstream.error is None and not self.downstream.ready:
                return
            if self.downstream.error is not None:
                self.error = self.downstream.error
        self.ready = True
        if self.upstream is not None and not self.upstream.joined:
            self.upstream.join(self.tree())
        self._answer_waiters()

    def _answer_waiters(self) -> None:
        waiters, self.ready_waiters = self.ready_waiters, []
        for m in waiters:
            self.respond(m, self._status())

    # -------------------------------------------------------- job traffic
    async def receive_jobs(self, items: list[dict]) -> None:
        if self.runner is not None:
            await self.runner.submit(items)
        elif self.downstream is not None:
            self.downstream.forward(items)

    def receive_cancel(self, key: int, ctx: dict) -> None:
        if self.runner is not None:
            self.runner.cancel(key, ctx)
        elif self.downstream is not None:
            self.downstream.cancel_forwarded(key, ctx)

    def receive_kill(self, key: int, signum: int) -> None:
        if self.runner is not None:
            self.runner.kill(key, signum)
        elif self.downstream is not None:
            self.downstream.kill_forwarded(key, signum)

    # ---------------------------------------------------------------- RPCs
    @method("join", streaming=True, owner_only=True)
    def join(self, msg):
        if self.downstream is None:
            raise FluxError(errno.ENOSYS, "this instance starts no ensemble children")
        self.downstream.join(msg, payload_of(msg))
        return NOREPLY

    @method("events", owner_only=True)
    def events(self, msg):
        if self.downstream is None:
            raise FluxError(errno.ENOSYS, "this instance starts no ensemble children")
        self.downstream.events(payload_of(msg))
        return NOREPLY if msg.noresponse else {}

    def disconnect(self, sender: str) -> None:
        if self.downstream is not None:
            self.downstream.disconnect(sender)
        self.ready_waiters = [m for m in self.ready_waiters if m.sender != sender]
        self.progress_streams = [m for m in self.progress_streams if m.sender != sender]
        self.drain_waiters = [m for m in self.drain_waiters if m.sender != sender]

    def _status(self) -> dict:
        cfg = self.cfg
        out = {"enabled": True, "error": self.error, "ready": self.ready,
               "member": bool(cfg and cfg.member),
               "shape": shape.render(cfg.levels) if cfg else None,
               "policy": cfg.policy if cfg else None,
               "role": ("error" if self.error else "leaf" if self.runner is not None
                        else "parent" if self.downstream is not None else "starting")}
        if cfg is not None and self.error is None:
            out["tree"] = self.tree()
        if self.downstream is not None:
            out.update(self.downstream.describe())
        if self.runner is not None:
            out.update(self.runner.describe())
        return out

    # ------------------------------------------------------ progress, drain
    def _counts(self) -> dict:
        d = self.downstream
        st = d.stats if d is not None else {}
        return {"taken": st.get("taken", 0), "completed": st.get("completed", 0),
                "failed": st.get("failed", 0), "active": d.local_active if d is not None else 0}

    def job_done(self) -> None:
        """A job of ours is over (its child's `clean` was mirrored)."""
        if self.progress_streams:
            if self.downstream.local_active == 0:  # the last one: say so at once
                if self.progress_timer is not None:
                    self.progress_timer.cancel()
                self._send_progress()
            elif self.progress_timer is None:
                self.progress_timer = asyncio.get_running_loop().call_later(0.2, self._send_progress)
        if self.drain_waiters and self.downstream.local_active == 0:
            waiters, self.drain_waiters = self.drain_waiters, []
            for m in waiters:
                self.respond(m, self._counts())

    def _send_progress(self) -> None:
        self.progress_timer = None
        counts = self._counts()
        for m in self.progress_streams:
            self.respond(m, counts)

    @method("progress", streaming=True)
    def progress(self, msg):
        """Counts of this instance's jobs sent down (taken, completed, failed, active),
        now and then at most five times a second while they change."""
        self.progress_streams.append(msg)
        self.respond(msg, self._counts())
        return NOREPLY

    @method("drain")
    def drain(self, msg):
        """Answer once no job of ours is running below (the children keep running, so
        `flux queue drain` would wait for them too)."""
        if self.downstream is None or self.downstream.local_active == 0:
            return self._counts()
        self.drain_waiters.append(msg)
        return NOREPLY

    @method("status")
    def status(self, msg):
        if payload_of(msg).get("wait") and not self.ready and not self.error:
            self.ready_waiters.append(msg)
            return NOREPLY
        return self._status()

    @method("stats")
    def stats(self, msg):
        t = os.times()
        out = {"cpu": t.user + t.system, "time": time.time(), "level": self.broker.attrs.get("instance-level"),
               "role": self._status()["role"]}
        if self.downstream is not None:
            out.update(self.downstream.stats)
        if self.upstream is not None:
            out["received"] = self.upstream.stats["received"]
            if out.get("t_first") is None:
                out["t_first"] = self.upstream.stats["t_first"]
        if self.runner is not None:
            out["ran"] = self.runner.stats["ran"]
            out["t_last"] = self.runner.stats["t_last"]
        return out
