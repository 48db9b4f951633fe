"""This machine as a graph (`hwloc` / `local` reader): node > socket > core, memory
(one pool per NUMA node, in MB), gpu.

Cores are the logical CPUs in our affinity mask (so a broker inside an allocation
sees only its share), sockets come from /sys/devices/system/cpu/*/topology, NUMA
memory from /sys/devices/system/node, GPUs from nvidia-smi or /dev/nvidia*.
`data`: None or {"rank": int, "hostname": str}.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from flux.core.resource.discover import local_cores, local_gpus
from flux.core.resource.graph.graph import ResourceGraph
from flux.core.util import idset

SYS = Path("/sys/devices/system")


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _socket_of(cpu: int) -> int:
    v = _read(SYS / f"cpu/cpu{cpu}/topology/physical_package_id")
    return int(v) if v and v.lstrip("-").isdigit() and int(v) >= 0 else 0


def _numa() -> list[tuple[int, set[int], int]]:
    """(numa id, cpus, memory MB) per NUMA node."""
    out = []
    for d in sorted((SYS / "node").glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        cpus = _read(d / "cpulist")
        mem = _read(d / "meminfo") or ""
        m = re.search(r"MemTotal:\s+(\d+)\s*kB", mem)
        try:
            cpuset = set(idset.decode(cpus)) if cpus else set()
        except ValueError:
            cpuset = set()
        out.append((int(d.name[4:]), cpuset, int(m.group(1)) // 1024 if m else 0))
    return out


def _memtotal_mb() -> int:
    text = _read(Path("/proc/meminfo")) or ""
    m = re.search(r"MemTotal:\s+(\d+)\s*kB", text)
    return int(m.group(1)) // 1024 if m else 0


def read(data: Any = None) -> ResourceGraph:
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError("the local reader takes {} or {'rank': N, 'hostname': NAME}")
    rank = data.get("rank", 0)
    if not isinstance(rank, int) or rank < 0:
        raise ValueError(f"local reader: rank must be an integer >= 0, not {rank!r}")
    host = str(data.get("hostname") or os.uname().nodename)
    cpus = local_cores()
    sockets: dict[int, list[int]] = {}
    for c in cpus:
        sockets.setdefault(_socket_of(c), []).append(c)
    numa = [(n, cs & set(cpus), mb) for n, cs, mb in _numa()]
    g = ResourceGraph()
    root = g.add_vertex(None, "cluster", id=0)
    node = g.add_vertex(root, "node", id=rank, rank=rank, name=host)
    placed_mem = False
    for s in sorted(sockets):
        sock = g.add_vertex(node, "socket", id=s)
        for c in sockets[s]:
            g.add_vertex(sock, "core", id=c)
        for n, cs, mb in numa:
            if mb and cs and cs <= set(sockets[s]):
                g.add_vertex(sock, "memory", id=n, size=mb, unit="MB")
                placed_mem = True
    if not placed_mem:
        mb = _memtotal_mb()
        if mb:
            g.add_vertex(node, "memory", id=0, size=mb, unit="MB")
    for i in local_gpus():
        g.add_vertex(node, "gpu", id=i)
    return g.finalize()
