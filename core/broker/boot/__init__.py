"""How a broker learns its place in the instance (broker.boot-method).

`select()` picks one method, in this order:

- `test`: `flux start --test-size` gave --boot-rank/--boot-size (every broker on
  this host, ipc:// endpoints in the shared rundir);
- `config`: the broker config has a `[bootstrap]` table with `hosts`
  (flux.core.broker.boot.config, a system instance with no foreign launcher);
- `simple`: PMI_FD, PMI_RANK and PMI_SIZE are set (our job shell, or Slurm's
  `srun --mpi=pmi2`): flux.core.broker.boot.pmi;
- `single`: none of these, a singleton instance of size 1.

A bootstrap object has `method`, `rank`, `size`, `attrs` (broker attributes it
sets: hostlist, tbon.endpoint, jobid, ...), `curve` (None, or {"public",
"secret"[, "server_public"][, "allowed"]} for the overlay's CURVE sockets; with
"allowed", a set of client public keys, the parent's ZAP handler refuses any other) and may have
`async exchange(broker)`, which the overlay awaits after binding its socket and
before connecting to its parent (PMI publishes the bound endpoint there and
learns the parent's: `tbon.parent-endpoint` and curve["server_public"]).
"""

from __future__ import annotations

import os
from typing import Any


class Fixed:
    """Rank and size known in advance (test and single methods)."""

    curve = None

    def __init__(self, method: str, rank: int, size: int):
        self.method, self.rank, self.size = method, rank, size
        self.attrs: dict[str, str] = {"broker.boot-method": method}


def has_pmi(env: dict[str, str] | None = None) -> bool:
    """PMI-1 on PMI_FD is offered, and FLUX_PMI_CLIENT_METHODS (default `simple
    libpmi2 libpmi single`; only `simple` and `single` exist here) allows it."""
    env = os.environ if env is None else env
    methods = env.get("FLUX_PMI_CLIENT_METHODS")
    if methods is not None and "simple" not in methods.split():
        return False
    return all(env.get(k) for k in ("PMI_FD", "PMI_RANK", "PMI_SIZE"))


def select(conf: dict, attrs: dict[str, str], boot_rank: int | None = None,
           boot_size: int | None = None, env: dict[str, str] | None = None) -> Any:
    """The bootstrap for this broker (see the module doc). Raises FluxError with a
    clear message when the chosen method fails."""
    if boot_rank is not None:
        test = Fixed("test", boot_rank, boot_size if boot_size is not None else 1)
        # ipc:// and unencrypted unless a certificate is configured
        from flux.core.broker.boot.config import load_curve

        test.curve = load_curve(conf, attrs)
        return test
    method = attrs.get("broker.boot-method")
    boot = conf.get("bootstrap") if isinstance(conf, dict) else None
    if method == "config" or (method is None and isinstance(boot, dict) and "hosts" in boot):
        from flux.core.broker.boot.config import ConfigBootstrap

        return ConfigBootstrap(conf, attrs)
    if method in ("simple", "pmi") or (method is None and has_pmi(env)):
        from flux.core.broker.boot.pmi import PMIBootstrap

        return PMIBootstrap(attrs, env)
    if method not in (None, "single"):
        from flux.core.errors import FluxError

        raise FluxError(22, f"unknown broker.boot-method '{method}' (config, simple, single)")
    return Fixed("single", 0, 1)
