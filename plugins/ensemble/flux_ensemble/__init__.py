"""Hierarchical ensembles (see docs/ensembles.md)."""
