"""A broker plugin whose hooks raise, and whose service fails to start."""

from flux.core.broker.service import Service
from flux.core.hookspecs import hookimpl


class FailsToStart(Service):
    name = "testfailstart"

    async def start(self):
        raise RuntimeError("testfailstart: start failed (on purpose)")


@hookimpl
def broker_services(broker):
    if broker.attrs.get("testplug.services") == "bad-return":
        return 42  # not a list of services
    if broker.attrs.get("testplug.services") == "fail-start":
        return [FailsToStart(broker)]
    raise RuntimeError("testplug_raises: broker_services failed (on purpose)")


@hookimpl
def broker_ready(broker):
    raise ValueError("testplug_raises: broker_ready failed (on purpose)")


@hookimpl
def broker_shutdown(broker):
    raise KeyError("testplug_raises: broker_shutdown failed (on purpose)")
