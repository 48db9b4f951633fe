"""Kernel-side job data model: pure helpers with no I/O.

- :mod:`flux.core.job.fluid`: job ids (RFC 19): generator, encodings, parsing
- :mod:`flux.core.job.states`: job states and results (RFC 21; SPEC 4.2-4.4)
- :mod:`flux.core.job.jobspec`: jobspec validation and typed model (RFC 14, RFC 25)
- :mod:`flux.core.job.taskmap`: task maps (RFC 34)
"""
