"""gpu-affinity: CUDA_VISIBLE_DEVICES from the GPUs R gives this rank.

As flux-core: unless `gpu-affinity=off`, tasks get CUDA_VISIBLE_DEVICES=-1 when
the rank has no GPUs (so they do not use GPUs they were not given); otherwise
CUDA_DEVICE_ORDER=PCI_BUS_ID (unless already set) and, with `on` (default), the
rank's GPU ids, or with `per-task` an equal share for each task.
"""

from __future__ import annotations

from flux.core.hookspecs import hookimpl


@hookimpl
def shell_init(shell):
    opt = shell.getopt("gpu-affinity", "on")
    if opt == "off":
        return
    if opt not in ("on", "per-task"):
        raise ValueError(f"gpu-affinity={opt}: expected on, off or per-task")
    gpus = shell.rankinfo.gpus
    shell.setenv("CUDA_VISIBLE_DEVICES", "-1")
    if not gpus:
        return
    shell.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", overwrite=False)
    if opt == "on":
        shell.setenv("CUDA_VISIBLE_DEVICES", ",".join(map(str, gpus)))
        return
    n = len(shell.tasks)
    per = len(gpus) // n if n else 0
    shell.aux["gpubind"] = [gpus[i * per:(i + 1) * per] for i in range(n)]


@hookimpl
def task_init(shell, task):
    sets = shell.aux.get("gpubind")
    if sets is None:
        return
    ids = sets[task.localid] if task.localid < len(sets) else []
    task.setenv("CUDA_VISIBLE_DEVICES", ",".join(map(str, ids)) if ids else "-1")
