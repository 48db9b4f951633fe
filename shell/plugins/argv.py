"""argv: render `{{tag}}` templates in the task's command (`{{tmpdir}}/script`, as
`flux batch` writes it, `{{id}}`, `{{taskid}}`...). Unknown tags stay as written."""

from __future__ import annotations

from flux.core.hookspecs import hookimpl
from flux.shell import mustache


@hookimpl
def task_init(shell, task):
    if any("{{" in a for a in task.argv):
        task.argv = [mustache.render(a, shell, task) for a in task.argv]
