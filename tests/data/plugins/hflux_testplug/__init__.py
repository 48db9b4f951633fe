"""A fake plugin distribution for the tests (put this folder on PYTHONPATH)."""
