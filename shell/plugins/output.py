"""output: send stdout/stderr to files (`output.stdout|stderr = {type: file, path}`).

Paths are mustache templates (`flux-{{id}}.out`); a path with task tags
(`{{taskid}}`, `{{task.*}}`) makes one file per task. Relative paths are relative to
the job's working directory. stderr goes to the stdout file unless it has its own
setting. `label: true` prefixes each line with `<task rank>: `; `output.mode` is
`truncate` (default) or `append`. The output eventlog records a `redirect` event.
"""

from __future__ import annotations

import os

from flux.core.hookspecs import hookimpl
from flux.shell import mustache
from flux.shell.output import FileSink


def _conf(opts: dict, stream: str) -> dict | None:
    c = opts.get(stream)
    if c is None:
        return None
    if not isinstance(c, dict):
        raise ValueError(f"shell option output.{stream} must be an object {{type, path}}")
    t = c.get("type", "file" if "path" in c else "kvs")
    if t in ("kvs", "term"):
        return None
    if t != "file":
        raise ValueError(f"output.{stream}.type={t}: expected kvs or file")
    if not isinstance(c.get("path"), str) or not c["path"]:
        raise ValueError(f"output.{stream}.type=file needs a path")
    return c


@hookimpl
def shell_init(shell):
    opts = shell.getopt("output") or {}
    if not isinstance(opts, dict):
        raise ValueError("shell option output must be an object")
    out = _conf(opts, "stdout")
    err = _conf(opts, "stderr")
    if out is None and err is None:
        return
    mode = opts.get("mode", "truncate")
    if mode not in ("truncate", "append"):
        raise ValueError(f"output.mode={mode}: expected truncate or append")
    opened: dict[tuple[str, bool], FileSink] = {}

    def sink(path: str, label: bool) -> FileSink:
        if not os.path.isabs(path) and shell.cwd:
            path = os.path.join(shell.cwd, path)
        key = (path, label)
        if key not in opened:
            try:
                opened[key] = FileSink(path, mode, label)
            except OSError as exc:
                raise ValueError(f"cannot open output file {path}: {exc.strerror}") from None
        return opened[key]

    def setup(conf: dict, label: bool):
        tmpl = conf["path"]
        if mustache.has_task_tags(tmpl):
            return {t.rank: sink(mustache.render(tmpl, shell, t), label) for t in shell.tasks}
        return sink(mustache.render(tmpl, shell), label)

    if out is not None:
        label = bool(out.get("label", False))
        shell.output.redirect("stdout", setup(out, label))
        if err is None:
            shell.output.redirect("stderr", setup(out, label))
    if err is not None:
        shell.output.redirect("stderr", setup(err, bool(err.get("label", False))))
