"""The `job-list` service (RFC 43; SPEC 7.8): read-only summaries of every job.

- `jobdata`: one job's listable attributes, computed once from its eventlog, jobspec and R
- `constraint`: RFC 31 constraint objects with the job-list operators, compiled to matchers
- `service`: the `job-list` service, fed in-process by the job manager's listeners
- `plugin`: the `flux.broker` plugin that starts `job-list` and `job-info` on rank 0
"""
