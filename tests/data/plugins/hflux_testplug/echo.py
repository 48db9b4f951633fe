"""A working broker plugin: service `testecho` answers `testecho.hello` with its payload."""

from flux.core.broker.service import Service, method
from flux.core.hookspecs import hookimpl


class Echo(Service):
    name = "testecho"

    @method("hello")
    def hello(self, msg):
        return {"echo": msg.data(), "rank": self.broker.rank}


@hookimpl
def broker_services(broker):
    return [Echo(broker)]


@hookimpl
def broker_ready(broker):
    broker.log(6, "testplug_echo: ready")
