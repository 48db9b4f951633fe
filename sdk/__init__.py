"""`import flux`: the Python API of a Flux-compatible hierarchical job manager."""

from flux import constants
from flux.core.errors import FluxError
from flux.handle import Flux

__all__ = ["Flux", "FluxError", "constants"]


def __getattr__(name: str):
    """Submodules on first use (`flux.job`, `flux.resource`, `flux.hostlist`...).

    flux-core's packages import many of their siblings eagerly, so tools written for it
    reach e.g. `flux.resource.list` after `import flux`; loading on demand gives them
    the same names without making `import flux` slow."""
    import importlib

    if name.startswith("_"):
        raise AttributeError(f"module 'flux' has no attribute '{name}'")
    try:
        return importlib.import_module(f"flux.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"flux.{name}":
            raise
        raise AttributeError(f"module 'flux' has no attribute '{name}'") from None
