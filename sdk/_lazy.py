"""Submodules loaded on first attribute access (PEP 562), as `flux` and `flux.job` do.

flux-core's packages import many of their submodules eagerly, so tools written for it
reach e.g. `flux.resource.list` or `flux.job.executor` after a bare `import flux`;
loading on demand gives them the same names without slowing every `import flux`.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def submodule(package: str, name: str) -> ModuleType:
    """`package.name`, imported now; AttributeError (as for any missing attribute) when
    there is no such submodule or the name is private."""
    if name.startswith("_"):
        raise AttributeError(f"module '{package}' has no attribute '{name}'")
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{package}.{name}":
            raise  # the submodule exists but something it imports is missing
        raise AttributeError(f"module '{package}' has no attribute '{name}'") from None
