"""`import flux`: the Python API of a Flux-compatible hierarchical job manager."""

from flux import constants
from flux.core.errors import FluxError
from flux.handle import Flux

__all__ = ["Flux", "FluxError", "constants"]


def __getattr__(name: str):
    """Submodules on first use (`flux.job`, `flux.resource`, `flux.hostlist`...)."""
    from flux._lazy import submodule

    return submodule("flux", name)
