"""What this machine offers: cores from our CPU affinity, GPUs from the NVIDIA driver."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess


def local_cores() -> list[int]:
    """Logical CPUs this process may run on (so a broker inside an allocation sees only its share)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def local_gpus() -> list[int]:
    """GPU indices: nvidia-smi when present, else /dev/nvidiaN device nodes."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                ids = [int(x) for x in out.stdout.split() if x.strip().isdigit()]
                return _restrict(ids, visible)
        except (OSError, subprocess.TimeoutExpired):
            pass
    ids = []
    for dev in glob.glob("/dev/nvidia[0-9]*"):
        m = re.fullmatch(r"/dev/nvidia(\d+)", dev)
        if m:
            ids.append(int(m.group(1)))
    return _restrict(sorted(ids), visible)


def _restrict(ids: list[int], visible: str | None) -> list[int]:
    if visible is None or visible.strip() == "":
        return ids
    keep = {int(x) for x in visible.split(",") if x.strip().isdigit()}
    return [i for i in range(len([i for i in ids if i in keep]))]


def local_resources() -> dict:
    """{"cores": [...], "gpus": [...], "hostname": ...} for this broker's node."""
    return {"cores": local_cores(), "gpus": local_gpus(), "hostname": os.uname().nodename}
