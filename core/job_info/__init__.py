"""The `job-info` service (RFC 41; SPEC 5.3): job data for guests and tools.

- `service`: `job-info.lookup`, `eventlog-watch`, `eventlog-watch-cancel`, `update-lookup`,
  `update-watch`; the primary eventlog, jobspec and R come from the job manager's memory,
  everything else from the KVS
- `watch`: the stream objects behind `eventlog-watch`, including guest eventlogs that
  move from the job's namespace to the primary namespace when the job ends
"""
