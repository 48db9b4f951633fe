"""``flux.resource.list``: the scheduler's view of the instance's resources
(``resource_list(h).get()`` -> :class:`SchedResourceList` with ``all``, ``down``,
``allocated``, ``up`` and ``free`` resource sets), as flux-core offers it.

The request goes to ``resource.sched-status`` (or ``$FLUX_RESOURCE_LIST_RPC``) and, when
no service answers that topic (ENOSYS), to the scheduler's ``sched.resource-status``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from flux.idset import IDset
from flux.resource.ResourceSet import ResourceSet

__all__ = ["ResourceListRPC", "SchedResourceList", "resource_list"]

FALLBACK_TOPIC = "sched.resource-status"


class SchedResourceList:
    """The ``all``, ``down`` and ``allocated`` sets of a response, and ``up``
    (all - down) and ``free`` (up - allocated) computed from them.  Subscriptable:
    ``rl["free"]``."""

    def __init__(self, resp: dict):
        for state in ("all", "down", "allocated"):
            rset = resp.get(state)
            if not isinstance(rset, ResourceSet):
                rset = ResourceSet(rset)
            rset.state = state
            setattr(self, state, rset)

    def __getitem__(self, item: str) -> ResourceSet:
        return getattr(self, item)

    @property
    def up(self) -> ResourceSet:
        """Resources that are not down."""
        res = self.all - self.down
        res.state = "up"
        return res

    @property
    def free(self) -> ResourceSet:
        """Resources neither down nor allocated."""
        res = self.up - self.allocated
        res.state = "free"
        return res

    def filter(self, include: Any) -> None:
        """Keep only the given ranks (an idset) or hosts (a hostlist)."""
        try:
            ranks = IDset(include)
        except ValueError:
            ranks = IDset(self.all.host_ranks(include, ignore_nomatch=True))
        for state in ("all", "down", "allocated"):
            rset = self[state].copy_ranks(ranks)
            rset.state = state
            setattr(self, state, rset)


class ResourceListRPC:
    """The future of :func:`resource_list`: ``get()`` gives a SchedResourceList;
    ``then(cb)`` calls ``cb(future)`` from the reactor once it is ready."""

    def __init__(self, flux_handle: Any, topic: str, nodeid: int = 0):
        self.handle = flux_handle
        self.topic = topic
        self.nodeid = nodeid
        self._fallen_back = topic == FALLBACK_TOPIC
        self._rpc = flux_handle.rpc(topic, nodeid=nodeid)

    def _retry(self, exc: OSError) -> bool:
        """On ENOSYS from the first topic, ask the scheduler instead."""
        if exc.errno == errno.ENOSYS and not self._fallen_back:
            self._fallen_back = True
            self._rpc = self.handle.rpc(FALLBACK_TOPIC, nodeid=self.nodeid)
            return True
        return False

    def _payload(self) -> dict:
        while True:
            try:
                return self._rpc.get()
            except OSError as exc:
                if not self._retry(exc):
                    raise

    def get(self) -> SchedResourceList:
        """Block until the answer arrives; OSError if the request failed."""
        return SchedResourceList(self._payload())

    def wait_for(self, timeout: float = -1.0) -> ResourceListRPC:
        self._rpc.wait_for(timeout)
        if self._rpc.is_ready():
            try:
                self._rpc.get()
            except OSError as exc:
                if self._retry(exc):
                    self._rpc.wait_for(timeout)
        return self

    def is_ready(self) -> bool:
        return self._rpc.is_ready()

    def then(self, callback: Callable, *args: Any, **kwargs: Any) -> ResourceListRPC:
        def step(rpc: Any) -> None:
            try:
                rpc.get()
            except OSError as exc:
                if self._retry(exc):
                    self._rpc.then(step)
                    return
            callback(self, *args, **kwargs)

        self._rpc.then(step)
        return self

    def get_flux(self) -> Any:
        return self.handle


def resource_list(flux_handle: Any) -> ResourceListRPC:
    """Ask for the scheduler's view of the resources; returns a future."""
    topic = os.environ.get("FLUX_RESOURCE_LIST_RPC") or "resource.sched-status"
    return ResourceListRPC(flux_handle, topic, nodeid=0)
