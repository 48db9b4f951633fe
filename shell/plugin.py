"""The shell's plugin stack: every `flux.shell` entry point (built-ins included).

Hooks are ShellSpec's (core/hookspecs.py). The stack is loaded once per process and
shared by every shell it hosts, so a warm shell server pays for entry-point discovery
once. Calls go straight to the implementations (no pluggy dispatch per call), in
registration order reversed (pluggy's order), and a plugin that raises is named in
the error the shell reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HOOKS = ("shell_init", "shell_post_init", "task_init", "task_exec", "task_fork", "task_exit",
         "shell_start", "shell_finish", "shell_exit")


class PluginFailed(Exception):
    def __init__(self, plugin: str, hook: str, exc: BaseException):
        super().__init__(f"plugin '{plugin}': {hook} failed: {exc}")
        self.plugin, self.hook, self.exc = plugin, hook, exc


class PluginStack:
    def __init__(self, plugins: list[tuple[str, Any]] | None = None, load: bool = True,
                 disabled: set[str] | frozenset = frozenset()):
        """Load the installed `flux.shell` plugins (and any given as (name, module))."""
        self.records: list = []
        self.hooks: dict[str, list[tuple[str, Callable, tuple[str, ...]]]] = {h: [] for h in HOOKS}
        if load:
            from flux.core.plugins import load_group

            pm, self.records = load_group("flux.shell", disabled=disabled)
            for h in HOOKS:
                for impl in reversed(getattr(pm.hook, h).get_hookimpls()):
                    self.hooks[h].append((impl.plugin_name, impl.function, tuple(impl.argnames)))
        for name, obj in plugins or []:
            self.add(name, obj)

    def add(self, name: str, obj: Any) -> None:
        """Register one more plugin object (module or instance) by name."""
        import inspect

        for h in HOOKS:
            fn = getattr(obj, h, None)
            if callable(fn):
                args = tuple(p for p in inspect.signature(fn).parameters)
                self.hooks[h].append((name, fn, args))

    def has(self, hook: str) -> bool:
        return bool(self.hooks[hook])

    def call(self, hook: str, shell: Any, task: Any = None) -> None:
        """Run a hook's implementations; raise PluginFailed naming the first that fails."""
        for name, fn, args in self.hooks[hook]:
            try:
                if args == ("shell", "task"):
                    fn(shell, task)
                elif args == ("shell",):
                    fn(shell)
                else:
                    kw = {"shell": shell, "task": task}
                    fn(**{a: kw[a] for a in args if a in kw})
            except Exception as exc:  # noqa: BLE001 - named in the shell's error
                raise PluginFailed(name, hook, exc) from exc
