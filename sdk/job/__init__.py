"""``flux.job``: job ids, jobspec, and (added by other modules) submission and monitoring.

Cheap names are imported here; the jobspec classes load on first use (PEP 562), so
``import flux.job`` stays light for code that only needs :class:`JobID`.
"""

from flux.job.JobID import JobID, id_encode, id_parse

_LAZY = {
    "Jobspec": "flux.job.jobspec",
    "JobspecV1": "flux.job.jobspec",
    "JobspecError": "flux.job.jobspec",
    "validate_jobspec": "flux.job.jobspec",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flux.job' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["JobID", "Jobspec", "JobspecError", "JobspecV1", "id_encode", "id_parse",
           "validate_jobspec"]
