"""Child instances: the jobspec of each (a nested `flux broker` as flux batch makes),
and R translated between a child's ranks and its parent's."""

from __future__ import annotations

import copy
import os
import sys

from flux.core.util import idset

from flux_ensemble.config import EnsembleConfig
from flux_ensemble.shape import ChildSpec, render

# what a child must not inherit from the broker that starts it (the shell sets its own)
_DROP_PREFIXES = ("FLUX_JOB_", "FLUX_TASK_", "PMI_", "SLURM_", "FLUX_KVS_NAMESPACE",
                  "FLUX_URI", "FLUX_PMI_LIBRARY_PATH", "FLUX_ENCLOSING_ID",
                  "FLUX_BROKER_PROFILE")  # a profile of the root is not overwritten by its children


def flux_command() -> str:
    """The `flux` next to this interpreter (the one that runs this broker), else PATH's."""
    here = os.path.join(os.path.dirname(sys.executable), "flux")
    return here if os.access(here, os.X_OK) else "flux"


def child_environment(index: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    prof = os.environ.get("FLUX_ENSEMBLE_PROFILE_CHILDREN")
    if prof:  # a developer's aid: profile every child broker to PREFIX.<level>-<index>.<rank>
        env["FLUX_BROKER_PROFILE"] = f"{prof}.{os.environ.get('FLUX_ENSEMBLE_PATH', '0')}-{index}"
        env["FLUX_ENSEMBLE_PATH"] = f"{os.environ.get('FLUX_ENSEMBLE_PATH', '0')}-{index}"
    return env


def broker_options(levels_below: tuple[str, ...], cfg: EnsembleConfig,
                   parent_uri: str | None = None) -> list[str]:
    """The child's own `[ensemble]` table: the rest of the shape, it is a member, and
    where its parent's ensemble service runs (our rank 0: the child's own parent-uri
    is the broker on its node, and every message would cross our overlay)."""
    extra = [f'--conf=ensemble.parent-uri="{parent_uri}"'] if parent_uri else []
    if not levels_below:
        # a leaf's allocations start no instance of ours: R without the JGF, which is
        # most of what the scheduler writes per job and of what goes up to the root
        extra.append("-Ssched-graph.match-format=rv1_nosched")
    return ["-Sbroker.rc2_none=1", *extra,
            # jobs come down with their dependencies met, and a child has no accounting
            # or prolog/epilog config: those jobtap plugins would only cost time there
            '--conf=job-manager.plugins-disable=["accounting","dependencies","prolog-epilog"]',
            "--conf=ensemble.member=true",
            f'--conf=ensemble.shape="{render(levels_below)}"',
            f'--conf=ensemble.policy="{cfg.policy}"',
            f"--conf=ensemble.batch-max={cfg.batch_max}",
            f"--conf=ensemble.flush-delay={cfg.flush_delay}"]


def child_jobspec(spec: ChildSpec, index: int, levels_below: tuple[str, ...],
                  cfg: EnsembleConfig, parent_uri: str | None = None) -> dict:
    """A nested instance of one broker per node over `spec`'s resources."""
    from flux.job import JobspecV1

    if spec.exclusive:
        js = JobspecV1.from_nest_command([], num_slots=spec.nnodes, num_nodes=spec.nnodes,
                                         exclusive=True,
                                         broker_opts=broker_options(levels_below, cfg, parent_uri),
                                         environment=child_environment(index), cwd=os.getcwd(),
                                         name=f"ensemble-{index}")
    else:
        js = JobspecV1.from_nest_command([], num_slots=1, cores_per_slot=spec.ncores,
                                         num_nodes=1,
                                         broker_opts=broker_options(levels_below, cfg, parent_uri),
                                         environment=child_environment(index), cwd=os.getcwd(),
                                         name=f"ensemble-{index}")
    d = copy.deepcopy(js.jobspec)
    d["tasks"][0]["command"][0] = flux_command()
    d["attributes"]["system"]["ensemble"] = {"child": index}
    return d


def ranks_of(R: dict | None) -> list[int]:
    """The sorted broker ranks of an R (the parent's ranks a child instance runs on)."""
    out: set[int] = set()
    for e in ((R or {}).get("execution") or {}).get("R_lite") or []:
        out.update(idset.decode(str(e.get("rank", ""))))
    return sorted(out)


class Reranker:
    """rerank() for one child, remembering the rank sets it has translated: a leaf's
    jobs use a few distinct rank sets over and over (one per node, mostly)."""

    __slots__ = ("mapping", "cache")

    def __init__(self, mapping: list[int]):
        self.mapping = mapping
        self.cache: dict[str, str] = {}

    def ranks(self, s: str) -> str:
        out = self.cache.get(s)
        if out is None:
            n = len(self.mapping)
            out = idset.encode([self.mapping[r] if r < n else r for r in idset.decode(s)])
            if len(self.cache) < 4096:
                self.cache[s] = out
        return out

    def __call__(self, R: dict) -> dict:
        ex = R.get("execution")
        if not isinstance(ex, dict) or not self.mapping:
            return R
        out = dict(R)
        ex = out["execution"] = dict(ex)
        lite = []
        for e in ex.get("R_lite") or []:
            e = dict(e)
            e["rank"] = self.ranks(str(e.get("rank", "")))
            lite.append(e)
        ex["R_lite"] = lite
        props = ex.get("properties")
        if isinstance(props, dict):
            ex["properties"] = {k: self.ranks(str(v)) for k, v in props.items()}
        ex.pop("nslots", None)
        return out


def rerank(R: dict, mapping: list[int]) -> dict:
    """R with rank i replaced by mapping[i] (a child's R in its parent's ranks, or the
    reverse with the inverse mapping). Ranks outside the mapping are kept."""
    return Reranker(mapping)(R)
