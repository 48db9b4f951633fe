"""sched-simple: first-come first-served allocation of cores and GPUs."""
