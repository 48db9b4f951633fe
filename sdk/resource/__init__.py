"""``flux.resource``: resource sets (RFC 20 R) and the scheduler's view of an instance's
resources, with the names of flux-core's Python bindings."""

from flux.resource.list import SchedResourceList, resource_list
from flux.resource.ResourceSet import ResourceSet

__all__ = ["ResourceSet", "SchedResourceList", "resource_list"]
