"""The built-in broker services, registered through the `flux.broker` hook like any plugin."""

from flux.core.hookspecs import hookimpl


@hookimpl
def broker_services(broker):
    from flux.core.broker.attributes import AttrService
    from flux.core.broker.builtin import (
        BrokerService,
        ConfigService,
        EventService,
        OverlayService,
        ServiceRegistry,
        StateMachine,
    )
    from flux.core.broker.rexec import RexecService

    return [AttrService(broker), EventService(broker), ServiceRegistry(broker),
            BrokerService(broker), StateMachine(broker), OverlayService(broker),
            RexecService(broker), ConfigService(broker)]
