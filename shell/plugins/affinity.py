"""cpu-affinity: bind tasks to the cores R gives this rank (flux-shell-options(7)).

`cpu-affinity=on` (default) binds every task to all of the rank's cores;
`per-task` splits them evenly between the local tasks; `off` binds nothing;
`map:LIST` gives task i the i-th `;`-separated cpu idset. A `verbose,` prefix logs
each binding, `dry-run,` logs without binding. R core ids are this node's CPU ids
(as the resource module reports them); ids the node does not have are skipped, and
a task with none left is not bound.
"""

from __future__ import annotations

from flux.core.hookspecs import hookimpl
from flux.core.util import idset


def parse(opt: object) -> tuple[str, bool, bool]:
    if opt is None:
        return "on", False, False
    if not isinstance(opt, str):
        raise ValueError(f"cpu-affinity must be a string (on, off, per-task, map:LIST), not {opt!r}")
    verbose = dry = False
    mode = opt
    while True:
        if mode.startswith("verbose,"):
            verbose, mode = True, mode[len("verbose,"):]
        elif mode.startswith("dry-run,"):
            dry, mode = True, mode[len("dry-run,"):]
        else:
            break
    if mode not in ("on", "off", "per-task") and not mode.startswith("map:"):
        raise ValueError(f"cpu-affinity={opt}: expected on, off, per-task or map:LIST")
    return mode, verbose, dry


def split(cpus: list[int], ntasks: int) -> list[set[int]]:
    """Give each task an equal share of cpus (in order); with fewer cpus than tasks,
    tasks share them round robin."""
    if ntasks <= 0 or not cpus:
        return [set() for _ in range(ntasks)]
    per = len(cpus) // ntasks
    if per == 0:
        return [{cpus[i % len(cpus)]} for i in range(ntasks)]
    return [set(cpus[i * per:(i + 1) * per]) for i in range(ntasks)]


@hookimpl
def shell_init(shell):
    mode, verbose, dry = parse(shell.getopt("cpu-affinity"))
    if mode == "off":
        return
    own = shell.host.spawner.own_cpus
    cores = [c for c in shell.rankinfo.cores if own is None or c in own]
    n = len(shell.tasks)
    if mode == "on":
        sets = [set(cores)] * n
    elif mode == "per-task":
        sets = split(cores, n)
    else:
        parts = mode[4:].split(";")
        if len(parts) < n:
            raise ValueError(f"cpu-affinity map has {len(parts)} entries for {n} tasks")
        sets = []
        for p in parts[:n]:
            try:
                sets.append(set(idset.decode(p)))
            except ValueError as exc:
                raise ValueError(f"cpu-affinity map: {exc}") from None
    shell.aux["affinity"] = (sets, verbose, dry)


@hookimpl
def task_init(shell, task):
    entry = shell.aux.get("affinity")
    if entry is None:
        return
    sets, verbose, dry = entry
    cpus = sets[task.localid] if task.localid < len(sets) else set()
    if verbose:
        what = idset.encode(cpus) if cpus else "(no cores of R on this node: not bound)"
        shell.log(6, f"task {task.rank}: cpus {what}{' (dry run)' if dry else ''}",
                  component="affinity")
    if cpus and not dry:
        task.cpus = cpus
