"""The job shell (`flux.shell`): runs a job's tasks on one broker rank.

- `shell`: JobShell, the lifecycle and plugin hooks (flux-shell(1))
- `info`: the task layout from jobspec and R (shared with the exec launcher)
- `task`, `output`, `input`: starting tasks, their output and input
- `plugin`: the `flux.shell` plugin stack; `plugins/`: the built-in plugins
- `server`: the per-rank shell server hosting many shells (started by the broker)
- `standalone`: `flux-shell JOBID` / `python -m flux.shell JOBID`

Importing this package is cheap; modules are imported where used.
"""
