"""`flux.broker` plugin: the `ensemble` service, in instances with an `[ensemble]` table.

Instances without one load nothing: no service, no jobtap callback, no listener.
A bad table is logged and reported by `ensemble.status` (and `flux ensemble status`);
the broker stays up and runs its jobs itself.
"""

from __future__ import annotations

from flux.core.hookspecs import hookimpl

from flux_ensemble.config import ConfigError, from_conf


@hookimpl
def broker_services(broker):
    if broker.rank != 0 or "ensemble" not in broker.conf:
        return None
    from flux_ensemble.service import EnsembleService

    try:
        cfg = from_conf(broker.conf)
    except ConfigError as exc:
        broker.log(3, f"ensemble: {exc}")
        return [EnsembleService(broker, None, error=str(exc))]
    return [EnsembleService(broker, cfg)]
