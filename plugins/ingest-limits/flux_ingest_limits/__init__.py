"""ingest-limits: site defaults, queue names and limits from the `[policy]` and `[queues]` config."""
