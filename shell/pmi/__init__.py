"""PMI-1 ("simple" wire protocol, RFC 13) served by the job shell to its tasks.

`wire` parses and formats request lines, `simple` is the protocol engine (one per
job shell: every local task is a client), `exchange` merges the puts of all the
job's shells at each barrier. The `pmi` shell plugin (flux.shell.plugins.pmi) ties
them to the tasks.
"""
