"""A member's resources: the R its parent granted to its job.

Once the core's resource service takes a job's R from the parent by itself (a child
instance with `jobid` and `parent-uri`), this does nothing. Until then, a member's
rank 0 fetches it here, before the resource service builds the inventory, and hands
it over as the `resource.R` attribute (ranks renumbered from 0).
"""

from __future__ import annotations

import importlib.util
import json

from flux_ensemble.children import to_child_ranks


def inherit_R(broker) -> None:
    if broker.attrs.get("resource.R") or broker.conf.get("resource", {}).get("config"):
        return
    if importlib.util.find_spec("flux.core.resource.parent") is not None:
        return  # the resource service fetches it itself
    try:
        from flux_ensemble.upstream import parent_of

        uri, jobid = parent_of(broker)
        import flux

        h = flux.Flux(uri)
        try:
            R = h.rpc("job-info.lookup", {"id": jobid, "keys": ["R"], "flags": 3}).get()["R"]
        finally:
            h.close()
        if isinstance(R, str):
            R = json.loads(R)
        broker.attrs.set("resource.R", json.dumps(to_child_ranks(R)))
    except Exception as exc:  # noqa: BLE001 - the instance then discovers its own
        broker.log(3, f"ensemble: could not take this job's R from the parent: {exc}")
