"""The ensemble root's feasibility check at ingest: a job must fit in one leaf.

An ensemble root holds no resources for jobs: all of them are its children's. Its
scheduler's feasibility check (the `feasibility` ingest plugin, one RPC per job)
measures a job against the whole instance, so a job bigger than a leaf passed it
and failed later in the leaf. The root replaces that plugin with this check, which
measures the job against a leaf (nodes, cores) and costs no RPC: the answer for
each distinct resource request is kept.
"""

from __future__ import annotations

import errno

import orjson
from flux.core.errors import FluxError
from flux.core.hookspecs import hookimpl
from flux.core.job.jobspec import slot_counts

from flux_ensemble.shape import ChildSpec


class FitsLeaf:
    def __init__(self, leaf: ChildSpec, shape: str):
        self.leaf = leaf
        self.shape = shape
        self.cache: dict[bytes, str | None] = {}

    def why_not(self, jobspec: dict) -> str | None:
        """Why the job cannot fit in a leaf, or None."""
        try:
            c = slot_counts(jobspec)
        except (KeyError, TypeError, ValueError, IndexError):
            return None  # not a shape we can count: the leaf's scheduler decides
        leaf = self.leaf
        have = f"a leaf of this ensemble (shape {self.shape}) has {leaf.nnodes} node(s) of " \
               f"{leaf.ncores} cores"
        if c.nnodes > leaf.nnodes:
            return f"unsatisfiable request: {c.nnodes} nodes requested, but {have}"
        if c.slot_size > leaf.ncores:
            return f"unsatisfiable request: slots of {c.slot_size} cores requested, but {have}"
        if c.ncores > leaf.nnodes * leaf.ncores:
            return f"unsatisfiable request: {c.ncores} cores requested, but {have}"
        return None

    @hookimpl(trylast=True)
    def ingest_validate(self, jobspec: dict) -> None:
        try:
            if "child" in (jobspec["attributes"]["system"].get("ensemble") or {}):
                return  # one of our child instances: scheduled here
        except (KeyError, TypeError, AttributeError):
            pass
        try:
            key = orjson.dumps(jobspec.get("resources"))
        except TypeError:
            key = None
        if key is not None and key in self.cache:
            why = self.cache[key]
        else:
            why = self.why_not(jobspec)
            if key is not None:
                if len(self.cache) >= 1024:
                    self.cache.clear()
                self.cache[key] = why
        if why is not None:
            raise FluxError(errno.EOVERFLOW, why)
