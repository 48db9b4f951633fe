"""``flux.job.Jobspec``: the module name flux-core uses; everything lives in
:mod:`flux.job.jobspec`."""

from flux.job.jobspec import (  # noqa: F401
    V1_RESOURCE_TYPES,
    Jobspec,
    JobspecError,
    JobspecV1,
    __all__,  # noqa: F401
    fileref,
    validate_jobspec,
)
