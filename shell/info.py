"""What a job shell knows about its job: jobspec, R, the task layout.

Shared by the shells and by the exec launcher on rank 0 (which needs the same task
map for the `shell.start` event and the output eventlog header), so both compute the
layout the same way, as flux-core's shell does:

- tasks: `tasks[0].count.total`, or one per slot (`per_slot: 1`); or the
  `per-resource` shell option (`{type: node|core, count}`) per node or per core.
- distribution over the ranks of R: each task needs `ncores // ntasks` cores (less if
  the smallest node has fewer); tasks are dealt to the largest ranks first, a rank
  leaving the deal once full; task ids then go to ranks in rank order (block).
- the `taskmap` shell option (`block`, `cyclic[:N]`, `manual:<RFC 34 map>`) may
  reorder task ids, with the same number of tasks per node.
"""

from __future__ import annotations

from typing import Any

from flux.core.job.taskmap import TaskMap, TaskMapError
from flux.core.util import hostlist, idset


class ShellInfoError(ValueError):
    """The jobspec or R cannot be run as given; the message names the problem."""


class RankInfo:
    """One rank of R: where a shell runs."""

    __slots__ = ("nodeid", "rank", "host", "cores", "gpus", "ntasks", "taskids", "core_ids",
                 "gpu_ids")

    def __init__(self, nodeid: int, rank: int, host: str, core_ids: str, gpu_ids: str,
                 cores: list[int], gpus: list[int]):
        self.nodeid = nodeid  # shell rank
        self.rank = rank  # broker rank
        self.host = host
        self.core_ids = core_ids  # idset strings as in R
        self.gpu_ids = gpu_ids
        self.cores = cores
        self.gpus = gpus
        self.ntasks = 0
        self.taskids: list[int] = []


def _count(v: Any, what: str) -> int:
    if isinstance(v, dict):
        v = v.get("min")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ShellInfoError(f"jobspec: {what} count must be a positive integer, not {v!r}")
    return v


def _walk(resources: Any, mult: int, acc: dict) -> None:
    """Find node, slot and core counts (flux-core's shell jobspec rules)."""
    if not isinstance(resources, list) or not resources:
        raise ShellInfoError("jobspec: a resource 'with' must be a non-empty list")
    for res in resources:
        if not isinstance(res, dict) or not isinstance(res.get("type"), str):
            raise ShellInfoError("jobspec: each resource needs a 'type'")
        rtype = res["type"]
        cur = mult * _count(res.get("count"), rtype)
        if rtype == "node":
            if acc["slots"] or acc["cores"] or acc["nodes"]:
                raise ShellInfoError("jobspec: node must come before slot and core, once")
            acc["nodes"] = cur
        elif rtype == "slot":
            if acc["cores"] or acc["slots"]:
                raise ShellInfoError("jobspec: only one slot, before core, is supported")
            acc["slots"] = cur
            cur = 1  # counting cores per slot from here
        elif rtype == "core":
            if not acc["slots"]:
                raise ShellInfoError("jobspec: core resource outside of a slot")
            if acc["cores"]:
                raise ShellInfoError("jobspec: only one core resource is supported")
            acc["cores"] = cur
        elif rtype == "gpu" and acc["slots"]:
            acc["gpus"] = cur
        if res.get("with"):
            _walk(res["with"], cur, acc)
        if rtype == "slot" and not acc["cores"]:
            raise ShellInfoError("jobspec: slot has no core resource below it")


def parse_jobspec(jobspec: Any) -> dict:
    """The parts of a V1 jobspec a shell needs; ShellInfoError names what is wrong."""
    if not isinstance(jobspec, dict):
        raise ShellInfoError("jobspec must be a JSON object")
    if jobspec.get("version") != 1:
        raise ShellInfoError(f"jobspec version must be 1, not {jobspec.get('version')!r}")
    acc = {"nodes": 0, "slots": 0, "cores": 0, "gpus": 0}
    _walk(jobspec.get("resources"), 1, acc)
    if not acc["cores"]:
        raise ShellInfoError("jobspec: no core resource")
    tasks = jobspec.get("tasks")
    if not isinstance(tasks, list) or len(tasks) != 1 or not isinstance(tasks[0], dict):
        raise ShellInfoError("jobspec: tasks must be a list of exactly one task")
    task = tasks[0]
    cmd = task.get("command")
    if (not isinstance(cmd, list) or not cmd
            or not all(isinstance(a, str) for a in cmd)):
        raise ShellInfoError("jobspec: tasks[0].command must be a non-empty list of strings")
    count = task.get("count")
    if not isinstance(count, dict):
        raise ShellInfoError("jobspec: tasks[0].count must be an object")
    if "total" in count:
        ntasks = _count(count["total"], "task total")
    elif count.get("per_slot") == 1:
        ntasks = acc["slots"]
    else:
        raise ShellInfoError(f"jobspec: unsupported task count {count!r} "
                             "(per_slot must be 1, or give total)")
    attrs = jobspec.get("attributes") or {}
    system = attrs.get("system") or {} if isinstance(attrs, dict) else {}
    if not isinstance(system, dict):
        raise ShellInfoError("jobspec: attributes.system must be an object")
    env = system.get("environment")
    if env is not None and not isinstance(env, dict):
        raise ShellInfoError("jobspec: attributes.system.environment must be an object")
    cwd = system.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ShellInfoError("jobspec: attributes.system.cwd must be a string")
    shell = system.get("shell") or {}
    options = shell.get("options") if isinstance(shell, dict) else None
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ShellInfoError("jobspec: attributes.system.shell.options must be an object")
    job = system.get("job")
    name = job.get("name") if isinstance(job, dict) else None
    return {"command": cmd, "ntasks": ntasks, "slots": acc["slots"], "nodes": acc["nodes"],
            "cores_per_slot": acc["cores"], "gpus_per_slot": acc["gpus"],
            "environment": env or {}, "cwd": cwd, "options": options,
            "duration": system.get("duration") or 0,
            "name": name if isinstance(name, str) else cmd[0].rsplit("/", 1)[-1]}


def parse_R(R: Any) -> list[RankInfo]:
    """The ranks of R in rank order (shell rank = index)."""
    if not isinstance(R, dict) or R.get("version") != 1:
        raise ShellInfoError("R must be an object with version 1")
    ex = R.get("execution")
    if not isinstance(ex, dict) or not isinstance(ex.get("R_lite"), list):
        raise ShellInfoError("R: execution.R_lite must be a list")
    found: dict[int, tuple[str, str]] = {}
    try:
        for entry in ex["R_lite"]:
            children = entry.get("children") or {}
            core_ids = children.get("core", "")
            gpu_ids = children.get("gpu", "")
            for r in idset.decode(entry["rank"]):
                if r in found:
                    raise ShellInfoError(f"R: rank {r} appears more than once")
                found[r] = (core_ids, gpu_ids)
        hosts: list[str] = []
        for h in ex.get("nodelist") or []:
            hosts.extend(hostlist.decode(h))
    except ShellInfoError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ShellInfoError(f"R: {exc}") from None
    ranks = sorted(found)
    if not ranks:
        raise ShellInfoError("R has no ranks")
    out = []
    for i, r in enumerate(ranks):
        core_ids, gpu_ids = found[r]
        out.append(RankInfo(i, r, hosts[i] if i < len(hosts) else "", core_ids, gpu_ids,
                            idset.decode(core_ids), idset.decode(gpu_ids)))
    return out


def distribute(ranks: list[RankInfo], ntasks: int) -> None:
    """Set each rank's ntasks: largest ranks first, `ncores // ntasks` cores a task."""
    total = sum(len(r.cores) for r in ranks)
    per_task = total // ntasks if ntasks else 0
    if per_task == 0:
        raise ShellInfoError(f"cannot distribute {ntasks} tasks over {total} cores of R "
                             "(more tasks than cores)")
    avail = [len(r.cores) for r in ranks]
    order = sorted(range(len(ranks)), key=lambda i: -avail[i])  # stable: ties by rank
    per_task = min(per_task, avail[order[-1]]) or per_task
    counts = [0] * len(ranks)
    queue = list(order)
    assigned = 0
    pos = 0
    while assigned < ntasks:
        if not queue:
            raise ShellInfoError(f"cannot fit {ntasks} tasks on R")
        i = queue[pos]
        if avail[i] >= per_task:
            avail[i] -= per_task
            counts[i] += 1
            assigned += 1
            pos += 1
        else:
            queue.pop(pos)
        if pos >= len(queue):
            pos = 0
    for r, n in zip(ranks, counts, strict=True):
        r.ntasks = n


def _per_resource(ranks: list[RankInfo], opt: Any) -> int:
    if not isinstance(opt, dict):
        raise ShellInfoError("shell option per-resource must be an object {type, count}")
    rtype = opt.get("type")
    count = opt.get("count", 1)
    if rtype not in ("node", "core"):
        raise ShellInfoError(f"per-resource.type must be node or core, not {rtype!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ShellInfoError(f"per-resource.count must be a positive integer, not {count!r}")
    for r in ranks:
        r.ntasks = count if rtype == "node" else count * len(r.cores)
    return sum(r.ntasks for r in ranks)


def build_taskmap(ranks: list[RankInfo], opt: Any) -> TaskMap:
    counts = [r.ntasks for r in ranks]
    if opt is None or opt == {}:
        m = TaskMap.block(counts)
    else:
        if isinstance(opt, str):
            scheme, _, value = opt.partition(":")
        elif isinstance(opt, dict):
            scheme, value = opt.get("scheme", "block"), opt.get("value", "")
        else:
            raise ShellInfoError("shell option taskmap must be {scheme, value}")
        try:
            if scheme == "block":
                m = TaskMap.block(counts)
            elif scheme == "cyclic":
                m = TaskMap.cyclic(counts, int(value) if value else 1)
            elif scheme == "manual":
                m = TaskMap.decode(value)
                TaskMap.block(counts).check(m)
            else:
                raise ShellInfoError(f"taskmap scheme '{scheme}' is not supported "
                                     "(block, cyclic[:N], manual:MAP)")
        except (TaskMapError, ValueError) as exc:
            if isinstance(exc, ShellInfoError):
                raise
            raise ShellInfoError(f"taskmap {scheme}: {exc}") from None
    for r in ranks:
        r.taskids = m.taskids(r.nodeid)
    return m


class JobInfo:
    """The whole job's layout (same on every rank)."""

    def __init__(self, jobid: int, jobspec: dict, R: dict):
        self.jobid = jobid
        self.jobspec = jobspec
        self.R = R
        self.spec = parse_jobspec(jobspec)
        self.options: dict = self.spec["options"]
        self.ranks = parse_R(R)
        per_res = self.options.get("per-resource")
        if per_res is not None:
            self.ntasks = _per_resource(self.ranks, per_res)
        else:
            self.ntasks = self.spec["ntasks"]
            distribute(self.ranks, self.ntasks)
        self.taskmap = build_taskmap(self.ranks, self.options.get("taskmap"))
        self.by_rank = {r.rank: r for r in self.ranks}
        ex = R.get("execution") or {}
        self.expiration = float(ex.get("expiration") or 0)

    @property
    def nnodes(self) -> int:
        return len(self.ranks)

    def rank_info(self, broker_rank: int) -> RankInfo:
        try:
            return self.by_rank[broker_rank]
        except KeyError:
            raise ShellInfoError(f"broker rank {broker_rank} is not in the job's R "
                                 f"(ranks {idset.encode(self.by_rank)})") from None
