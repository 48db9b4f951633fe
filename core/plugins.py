"""Loading plugins: hook groups through pluggy, drivers by name through stevedore.

A plugin that fails to import, or raises when called, is named in the error and
in the broker log; it never takes the caller down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import attrs
import pluggy
from flux.core.hookspecs import ALL_GROUPS, PROJECT, SPECS

log = logging.getLogger("flux.plugins")


@attrs.define
class PluginRecord:
    group: str
    name: str
    distribution: str
    version: str
    loaded: bool
    error: str | None = None


class PluginError(Exception):
    """A named plugin failed."""

    def __init__(self, plugin: str, exc: BaseException):
        super().__init__(f"plugin '{plugin}' failed: {exc}")
        self.plugin = plugin
        self.exc = exc


def _dist_of(ep) -> tuple[str, str]:
    d = getattr(ep, "dist", None)
    if d is None:
        return "?", "?"
    return d.metadata["Name"], d.version


def iter_entry_points(group: str) -> Iterator:
    from importlib.metadata import entry_points

    seen = set()
    for ep in entry_points(group=group):
        if ep.name in seen:  # the same dist on sys.path twice
            continue
        seen.add(ep.name)
        yield ep


def load_group(group: str, *, disabled: set[str] | frozenset = frozenset()
               ) -> tuple[pluggy.PluginManager, list[PluginRecord]]:
    """A PluginManager with every installed plugin of a hook group registered."""
    from stevedore import ExtensionManager

    pm = HookManager(PROJECT)
    pm.add_hookspecs(SPECS[group])
    records: dict[str, PluginRecord] = {}

    dists = {ep.name: _dist_of(ep) for ep in iter_entry_points(group)}

    def failed(_mgr, ep, exc):
        # stevedore's cached entry points carry no distribution: take it from importlib
        dist, ver = _dist_of(ep) if getattr(ep, "dist", None) else dists.get(ep.name, ("?", "?"))
        records[ep.name] = PluginRecord(group, ep.name, dist, ver, False, f"{type(exc).__name__}: {exc}")
        log.error("plugin %s (group %s, distribution %s %s) failed to load: %s: %s",
                  ep.name, group, dist, ver, type(exc).__name__, exc)

    mgr = ExtensionManager(namespace=group, invoke_on_load=False,
                           on_load_failure_callback=failed)
    for ext in mgr.extensions:
        dist, ver = (_dist_of(ext.entry_point) if getattr(ext.entry_point, "dist", None)
                     else dists.get(ext.name, ("?", "?")))
        if ext.name in disabled:
            records[ext.name] = PluginRecord(group, ext.name, dist, ver, False, "disabled by config")
            continue
        try:
            pm.register(ext.plugin, name=ext.name)
            records[ext.name] = PluginRecord(group, ext.name, dist, ver, True)
        except Exception as exc:  # noqa: BLE001 - a bad plugin is reported, not fatal
            records[ext.name] = PluginRecord(group, ext.name, dist, ver, False,
                                             f"{type(exc).__name__}: {exc}")
            log.error("plugin %s (group %s) was refused: %s", ext.name, group, exc)
    return pm, sorted(records.values(), key=lambda r: r.name)


class HookManager(pluggy.PluginManager):
    """A PluginManager that counts its (un)registrations, so `call_each` can keep each
    hook's implementations ready to call instead of rebuilding them on every call
    (hooks run several times per job on the throughput path)."""

    def __init__(self, project_name: str):
        super().__init__(project_name)
        self.generation = 0
        self.callers: dict[str, tuple[int, list]] = {}

    def register(self, plugin, name=None):
        self.generation += 1
        return super().register(plugin, name)

    def unregister(self, plugin=None, name=None):
        self.generation += 1
        return super().unregister(plugin, name)


def _callers(pm: pluggy.PluginManager, hookname: str) -> list:
    """[(plugin name, function, argument names)] in call order (last registered first)."""
    gen = getattr(pm, "generation", None)
    if gen is not None:
        cached = pm.callers.get(hookname)
        if cached is not None and cached[0] == gen:
            return cached[1]
    hook = getattr(pm.hook, hookname)
    out = [(i.plugin_name, i.function, tuple(i.argnames)) for i in reversed(hook.get_hookimpls())]
    if gen is not None:
        pm.callers[hookname] = (gen, out)
    return out


def call_each(pm: pluggy.PluginManager, hookname: str, **kwargs) -> list[tuple[str, Any, BaseException | None]]:
    """Call every implementation of a hook; return (plugin, result, exception) per plugin.

    Unlike a plain pluggy call, one plugin raising does not stop the others.
    """
    out = []
    for name, fn, argnames in _callers(pm, hookname):
        try:
            # positionally: argnames are the function's own parameters, in order
            out.append((name, fn(*map(kwargs.get, argnames)), None))
        except Exception as exc:  # noqa: BLE001
            out.append((name, None, exc))
    return out


def installed_drivers(group: str) -> list[str]:
    return sorted(ep.name for ep in iter_entry_points(group))


def load_driver(group: str, name: str) -> Any:
    """The object a driver entry point names; a clear error lists what is installed."""
    from stevedore import DriverManager
    from stevedore.exception import NoMatches

    what = ALL_GROUPS.get(group, group)
    try:
        return DriverManager(namespace=group, name=name, invoke_on_load=False).driver
    except NoMatches:
        have = ", ".join(installed_drivers(group)) or "none"
        raise LookupError(f"no {what} named '{name}' is installed (installed: {have})") from None
    except Exception as exc:
        raise LookupError(f"{what} '{name}' failed to load: {type(exc).__name__}: {exc}") from exc


def list_plugins(groups: list[str] | None = None) -> list[PluginRecord]:
    """Every installed plugin with whether it imports, for `flux plugins list`."""
    out = []
    for group in groups or list(ALL_GROUPS):
        for ep in iter_entry_points(group):
            dist, ver = _dist_of(ep)
            try:
                ep.load()
                out.append(PluginRecord(group, ep.name, dist, ver, True))
            except Exception as exc:  # noqa: BLE001
                out.append(PluginRecord(group, ep.name, dist, ver, False, f"{type(exc).__name__}: {exc}"))
    return out


class BrokerPlugins:
    """The broker's `flux.broker` plugins: they provide its services."""

    def __init__(self, broker):
        self.broker = broker
        disabled = set(broker.conf.get("plugins", {}).get("disable", []))
        # a plugin that fails to load is logged (at err) by load_group
        self.pm, self.records = load_group("flux.broker", disabled=disabled)

    def load_services(self) -> None:
        for name, services, exc in call_each(self.pm, "broker_services", broker=self.broker):
            if exc is not None:
                self.broker.log_exception(f"plugin {name}: broker_services failed", exc)
                continue
            if services is None:
                continue
            if not isinstance(services, list | tuple):
                self.broker.log(3, f"plugin {name}: broker_services returned "
                                   f"{type(services).__name__}, not a list of services; ignored")
                continue
            for svc in services:
                try:
                    self.broker.add_service(svc)
                    svc.plugin_name = name
                except Exception as e:  # noqa: BLE001
                    self.broker.remove_service(svc)
                    self.broker.log_exception(f"plugin {name}: service {getattr(svc, 'name', svc)}", e)

    def _notify(self, hook: str) -> None:
        for name, _res, exc in call_each(self.pm, hook, broker=self.broker):
            if exc is not None:
                self.broker.log_exception(f"plugin {name}: {hook} failed", exc)

    def broker_ready(self) -> list:
        """Call broker_ready everywhere; the awaitables returned are start-up work
        (resources, scheduler) that rank 0 finishes before it runs the initial program."""
        import inspect

        pending = []
        for name, res, exc in call_each(self.pm, "broker_ready", broker=self.broker):
            if exc is not None:
                self.broker.log_exception(f"plugin {name}: broker_ready failed", exc)
            elif inspect.isawaitable(res):
                pending.append((name, res))
        return pending

    def broker_shutdown(self) -> None:
        self._notify("broker_shutdown")

    async def broker_cleanup(self) -> None:
        """Await what each plugin's broker_cleanup returns (errors are logged)."""
        import inspect

        for name, res, exc in call_each(self.pm, "broker_cleanup", broker=self.broker):
            if exc is None and inspect.isawaitable(res):
                try:
                    await res
                except Exception as e:  # noqa: BLE001
                    exc = e
            if exc is not None:
                self.broker.log_exception(f"plugin {name}: broker_cleanup failed", exc)
