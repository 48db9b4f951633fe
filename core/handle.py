"""`flux.core.handle`: the module where flux-core's bindings define `Flux` (scripts
import it from here); the class is :class:`flux.handle.Flux`."""

from flux.handle import Flux

__all__ = ["Flux"]
