"""A broker plugin that raises while it is imported."""

raise RuntimeError("testplug_badimport cannot be imported (on purpose)")
