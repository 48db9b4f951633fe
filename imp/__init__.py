"""The IMP: the only part that runs with root privilege (docs/imp.md). Imports nothing
of the broker or the SDK."""
