"""`{{tag}}` templates in shell options (output paths, env-expand), SPEC 7.4.

Tags: `{{id}}`/`{{jobid}}` (also `.f58 .dec .hex .dothex .words`, and `.f58plain`),
`{{name}}`, `{{nnodes}}`, `{{size}}`/`{{ntasks}}`, `{{node.id|name|broker_rank|cores|
gpus|ncores}}`, `{{task.id|rank|index|localid}}`, `{{taskid}}`, `{{tmpdir}}`.
A tag that is unknown (or needs a task where there is none) is left as written.
"""

from __future__ import annotations

import re
from typing import Any

from flux.core.job import fluid

TAG = re.compile(r"{{\s*([A-Za-z0-9_.\-]+)\s*}}")
TASK_TAGS = ("task.", "taskid")


def has_task_tags(template: str) -> bool:
    return any(m.group(1).startswith(TASK_TAGS) for m in TAG.finditer(template))


def _id(jobid: int, enc: str) -> str | None:
    if enc in ("", "f58"):
        return fluid.encode_f58(jobid)
    if enc == "f58plain":
        return fluid.encode_f58plain(jobid)
    if enc in ("dec", "hex", "dothex", "words", "kvs"):
        return fluid.encode(jobid, enc)
    return None


def lookup(tag: str, shell: Any, task: Any = None) -> str | None:
    """The value of one tag, or None if unknown here."""
    head, _, rest = tag.partition(".")
    if head in ("id", "jobid"):
        return _id(shell.jobid, rest)
    if tag == "name":
        return shell.info.spec["name"]
    if tag == "nnodes":
        return str(shell.info.nnodes)
    if tag in ("size", "ntasks"):
        return str(shell.info.ntasks)
    if tag == "tmpdir":
        return shell.tmpdir
    if head == "node":
        r = shell.rankinfo
        v = {"id": r.nodeid, "name": r.host, "broker_rank": r.rank, "cores": r.core_ids,
             "gpus": r.gpu_ids, "ncores": len(r.cores)}.get(rest)
        return None if v is None else str(v)
    if task is not None:
        if tag == "taskid" or (head == "task" and rest in ("id", "rank")):
            return str(task.rank)
        if head == "task" and rest in ("index", "localid"):
            return str(task.localid)
    return None


def render(template: str, shell: Any, task: Any = None) -> str:
    if "{{" not in template:
        return template

    def sub(m: re.Match) -> str:
        v = lookup(m.group(1), shell, task)
        return m.group(0) if v is None else v

    return TAG.sub(sub, template)
