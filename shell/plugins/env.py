"""env-expand: environment variables rendered from mustache templates.

Shell option `env-expand = {NAME: TEMPLATE}` (the CLI puts `--env` values that
contain `{{...}}` here): job-wide tags are rendered once, task tags per task.
"""

from __future__ import annotations

from flux.core.hookspecs import hookimpl
from flux.shell import mustache


@hookimpl
def shell_init(shell):
    opt = shell.getopt("env-expand")
    if not opt:
        return
    if not isinstance(opt, dict):
        raise ValueError("shell option env-expand must be an object {NAME: template}")
    per_task = {}
    for name, tmpl in opt.items():
        if not isinstance(tmpl, str):
            raise ValueError(f"env-expand.{name} must be a string")
        if mustache.has_task_tags(tmpl):
            per_task[name] = tmpl
        else:
            shell.setenv(name, mustache.render(tmpl, shell))
    if per_task:
        shell.aux["env-expand"] = per_task


@hookimpl
def task_init(shell, task):
    for name, tmpl in shell.aux.get("env-expand", {}).items():
        task.setenv(name, mustache.render(tmpl, shell, task))
