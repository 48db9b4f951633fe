"""Registers the KVS and content services (rank 0 only).

Other ranks register nothing: a `kvs.*`, `kvs-watch.*` or `content.*` request made
there finds no local service and is forwarded up the tree to rank 0, which holds
the only copy. Reads are therefore always consistent, at the cost of a round trip
to rank 0.
"""

from flux.core.hookspecs import hookimpl


@hookimpl
def broker_services(broker):
    if broker.rank != 0:
        broker.kvs = None  # services here use RPCs, which reach rank 0
        return []
    from flux.core.kvs.content import ContentService
    from flux.core.kvs.service import KVSService, KVSWatchService

    kvs = KVSService(broker)
    return [kvs, KVSWatchService(broker, kvs), ContentService(broker, kvs)]
