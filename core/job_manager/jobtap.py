"""The job manager's `flux.jobtap` plugins, called without letting one plugin's
exception reach the job manager (it is logged with the plugin's name)."""

from __future__ import annotations

from flux.core.plugins import call_each, load_group


class Jobtap:
    def __init__(self, broker, manager):
        self.broker = broker
        self.manager = manager
        disabled = set(broker.conf.get("job-manager", {}).get("plugins-disable", []))
        self.pm, self.records = load_group("flux.jobtap", disabled=disabled)
        for r in self.records:
            if not r.loaded and r.error != "disabled by config":
                broker.log(3, f"jobtap plugin {r.name} ({r.distribution}) failed to load: {r.error}")
        self.idle: list[str] = []  # plugins that said this configuration needs them not
        for name, wanted, exc in call_each(self.pm, "jobtap_configure", manager=manager):
            if exc is not None:
                broker.log_exception(f"jobtap plugin {name}: jobtap_configure", exc)
            elif wanted is False:
                self.pm.unregister(name=name)
                self.idle.append(name)
        self._update_has()

    def _update_has(self) -> None:
        # skip the call machinery for hooks nobody implements (hot path)
        self.has = {h: bool(getattr(self.pm.hook, h).get_hookimpls())
                    for h in ("jobtap_validate", "jobtap_priority", "jobtap_state",
                              "jobtap_dependencies", "jobtap_event", "jobtap_delegate")}

    def register(self, plugin, name: str) -> None:
        """Add callbacks at run time: a broker plugin whose config enables it registers
        its jobtap object here, so instances without that config pay nothing."""
        self.pm.register(plugin, name=name)
        self._update_has()

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._update_has()

    def _call(self, hook: str, **kw) -> list:
        out = []
        for name, result, exc in call_each(self.pm, hook, manager=self.manager, **kw):
            if exc is not None:
                self.broker.log_exception(f"jobtap plugin {name}: {hook}", exc)
            else:
                out.append(result)
        return out

    def validate(self, job) -> None:
        """Raise the first plugin's rejection (ValueError/FluxError) to the submitter."""
        if not self.has["jobtap_validate"]:
            return
        for _name, _res, exc in call_each(self.pm, "jobtap_validate", job=job, manager=self.manager):
            if exc is not None:
                raise exc

    def priority(self, job) -> int | None:
        if not self.has["jobtap_priority"]:
            return None
        for r in self._call("jobtap_priority", job=job):
            if r is not None:
                return int(r)
        return None

    def state(self, job, state: str, prev: str) -> None:
        if self.has["jobtap_state"]:
            self._call("jobtap_state", job=job, state=state, prev=prev)

    def dependencies(self, job) -> None:
        if self.has["jobtap_dependencies"]:
            deps = job.system("dependencies") or []
            self._call("jobtap_dependencies", job=job, dependencies=deps)

    def event(self, job, name: str, context: dict) -> None:
        if self.has["jobtap_event"]:
            self._call("jobtap_event", job=job, name=name, context=context)

    def delegate(self, job):
        """The first plugin's delegate for this job (see JobtapSpec.jobtap_delegate)."""
        if not self.has["jobtap_delegate"]:
            return None
        for r in self._call("jobtap_delegate", job=job):
            if r is not None:
                return r
        return None
