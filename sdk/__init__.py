"""`import flux`: the Python API of a Flux-compatible hierarchical job manager."""

from flux import constants
from flux.core.errors import FluxError
from flux.handle import Flux

__all__ = ["Flux", "FluxError", "constants"]
